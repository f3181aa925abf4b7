"""Dataset preparation: source datasets -> verl RL prompt parquet + expert parquet (messages schema).

One module per source (`openr1`, `toolace`, `tiny_task`), each with a `main(argv=None)` console
entry; shared pieces: `load` (local file/folder or hub name through `datasets`), `formats`
(the two output formats), `counts` (drop accounting), `text_filters`, `token_count`.
"""

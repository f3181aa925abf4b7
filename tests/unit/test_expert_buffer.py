"""ExpertBuffer: order, epochs, resume, limits and the two schemas, on small parquet files."""

from __future__ import annotations

import copy
import json
from collections import Counter

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
import torch

from chord.data import ExpertBuffer, ExpertDataError

ROWS_PER_FILE = {"a.parquet": (20, 6), "b.parquet": (13, 4), "c.parquet": (20, 7)}  # rows, row group size
TOTAL = sum(n for n, _ in ROWS_PER_FILE.values())


def _write(path, rows, row_group_size):
    pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=row_group_size)
    return path


def _messages_row(tag: str, i: int) -> dict:
    return {
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": f"question {tag}{i}"},
            {"role": "assistant", "content": f"answer {tag}{i}"},
        ],
        "quality": float(i % 3),
    }


@pytest.fixture
def data_dir(tmp_path):
    d = tmp_path / "expert"
    d.mkdir()
    for name, (n, rg) in ROWS_PER_FILE.items():
        _write(d / name, [_messages_row(name[0], i) for i in range(n)], rg)
    return d


def _buffer(paths, tokenizer, **kw):
    kw.setdefault("max_prompt_length", 256)
    kw.setdefault("max_response_length", 64)
    kw.setdefault("shuffle_window_row_groups", 3)
    return ExpertBuffer(paths, tokenizer, **kw)


def _serve(buf, batch_sizes):
    out = []
    for n in batch_sizes:
        batch = buf.next_batch(n)
        assert len(batch.row_ids) == n
        out.extend(
            zip(batch.row_ids, map(tuple, batch.prompt_ids), map(tuple, batch.response_ids), strict=True)
        )
    return out


def test_every_row_served_once_per_epoch_over_files_and_row_groups(data_dir, tiny_tokenizer):
    buf = _buffer(data_dir, tiny_tokenizer, seed=3)
    assert buf.num_rows == TOTAL == 53
    served = [r[0] for r in _serve(buf, [7] * 23)]  # 161 rows: 3 full epochs + 2, 7 does not divide 53
    expected = {(str(data_dir / name), i) for name, (n, _) in ROWS_PER_FILE.items() for i in range(n)}
    epochs = [served[e * TOTAL : (e + 1) * TOTAL] for e in range(3)]
    for rows in epochs:
        assert Counter(rows) == Counter(expected)  # each row exactly once, nothing else
    assert epochs[0] != epochs[1] != epochs[2]  # a new order each epoch
    assert buf.epoch == 3 and buf.stats["epochs_completed"] == 3
    assert buf.stats["rows_served"] == 161 and buf.stats["rows_read"] == 161


def test_one_batch_larger_than_the_data_spans_epochs(data_dir, tiny_tokenizer):
    buf = _buffer(data_dir, tiny_tokenizer, seed=5)
    served = [r[0] for r in _serve(buf, [120, 39])]  # 159 = 3 epochs
    assert all(len(set(served[e * TOTAL : (e + 1) * TOTAL])) == TOTAL for e in range(3))
    assert served == [r[0] for r in _serve(_buffer(data_dir, tiny_tokenizer, seed=5), [53] * 3)]
    assert buf.epoch == 3


def test_shuffle_mixes_files_and_differs_by_seed(data_dir, tiny_tokenizer):
    first = [r[0] for r in _serve(_buffer(data_dir, tiny_tokenizer, seed=0), [TOTAL])]
    again = [r[0] for r in _serve(_buffer(data_dir, tiny_tokenizer, seed=0), [TOTAL])]
    other = [r[0] for r in _serve(_buffer(data_dir, tiny_tokenizer, seed=1), [TOTAL])]
    assert first == again
    assert first != other
    in_file_order = sorted(first, key=lambda r: (r[0], r[1]))
    assert first != in_file_order


def test_no_shuffle_serves_file_order_and_cycles(data_dir, tiny_tokenizer):
    buf = _buffer(data_dir, tiny_tokenizer, shuffle=False)
    served = [r[0] for r in _serve(buf, [10] * 6)]  # 60 rows: one epoch + 7
    file_order = [(str(data_dir / name), i) for name, (n, _) in ROWS_PER_FILE.items() for i in range(n)]
    assert served == file_order + file_order[:7]


@pytest.mark.parametrize("overflow", ["truncate", "drop"])
@pytest.mark.parametrize(
    "split", [1, 4, 9]
)  # batches served before the checkpoint; 9 * 5 crosses epoch 0 -> 1
def test_resume_gives_exactly_the_uninterrupted_rows(data_dir, tiny_tokenizer, overflow, split):
    # responses "answer a1" are 9 bytes + EOS; "answer a12" (11 tokens) is over the limit
    kw = dict(seed=11, overflow=overflow, max_response_length=10)
    sizes = [5] * 16  # 80 rows > one epoch of 53
    reference = _buffer(data_dir, tiny_tokenizer, **kw)
    uninterrupted = _serve(reference, sizes)

    first = _buffer(data_dir, tiny_tokenizer, **kw)
    before = _serve(first, sizes[:split])
    state = json.loads(json.dumps(first.state_dict()))  # must survive JSON
    resumed = _buffer(data_dir, tiny_tokenizer, **kw)
    resumed.load_state_dict(state)
    after = _serve(resumed, sizes[split:])
    assert before + after == uninterrupted
    assert resumed.stats == reference.stats
    assert resumed.epoch == reference.epoch >= 1
    over = 23  # rows 10.. of each file
    assert reference.stats["dropped" if overflow == "drop" else "truncated"] >= over


def test_state_dict_records_position_and_counters(data_dir, tiny_tokenizer):
    buf = _buffer(data_dir, tiny_tokenizer, shuffle=False, shuffle_window_row_groups=2)
    buf.next_batch(8)  # window 0 = a.parquet row groups 0 and 1 (12 rows)
    state = buf.state_dict()
    assert {k: state[k] for k in ("version", "epoch", "unit_index", "offset", "num_rows", "num_files")} == {
        "version": 1,
        "epoch": 0,
        "unit_index": 0,
        "offset": 8,
        "num_rows": 53,
        "num_files": 3,
    }
    buf.next_batch(5)  # 4 more from window 0, then 1 from window 1 (units 2, 3)
    assert (buf.state_dict()["unit_index"], buf.state_dict()["offset"]) == (2, 1)
    buf.next_batch(TOTAL - 13)  # exactly the end of the epoch
    assert (buf.epoch, buf.state_dict()["unit_index"], buf.state_dict()["offset"]) == (1, 0, 0)


def test_load_state_for_other_seed_or_files_is_refused(data_dir, tmp_path, tiny_tokenizer):
    buf = _buffer(data_dir, tiny_tokenizer, seed=0)
    buf.next_batch(3)
    state = buf.state_dict()
    with pytest.raises(
        ValueError, match=r"different data or settings: saved for seed=0.*this buffer has seed=1"
    ):
        _buffer(data_dir, tiny_tokenizer, seed=1).load_state_dict(state)
    with pytest.raises(ValueError, match="different data or settings"):
        _buffer(data_dir / "a.parquet", tiny_tokenizer, seed=0).load_state_dict(state)
    with pytest.raises(ValueError, match="different data or settings"):
        _buffer(data_dir, tiny_tokenizer, seed=0, shuffle_window_row_groups=2).load_state_dict(state)
    bad = dict(state, version=99)
    with pytest.raises(ValueError, match="not an expert buffer state"):
        _buffer(data_dir, tiny_tokenizer, seed=0).load_state_dict(bad)


def test_data_may_move_directories_between_save_and_resume(data_dir, tmp_path, tiny_tokenizer):
    buf = _buffer(data_dir, tiny_tokenizer)
    buf.next_batch(4)
    moved = data_dir.rename(tmp_path / "moved")
    resumed = _buffer(moved, tiny_tokenizer)
    resumed.load_state_dict(buf.state_dict())
    assert [r[1] for r in resumed.next_batch(6).row_ids] == [r[1] for r in buf.next_batch(6).row_ids]


def _long_rows():
    # byte tokenizer: one token per byte; the ChatML prompt wrapper adds 19 tokens around the question
    return [
        {"prompt": "q" * 4, "response": "r" * 5},  # fits
        {"prompt": "q" * 4, "response": "r" * 30},  # response too long
        {"prompt": "q" * 80, "response": "r" * 5},  # prompt too long
        {"prompt": "q" * 80, "response": "r" * 30},  # both
        {"prompt": "q" * 6, "response": "r" * 9},  # fits exactly: 9 + EOS = 10
    ]


def test_truncate_keeps_prompt_tail_and_response_head_and_counts(tmp_path, tiny_tokenizer):
    path = _write(tmp_path / "long.parquet", _long_rows(), 10)
    buf = ExpertBuffer(path, tiny_tokenizer, max_prompt_length=50, max_response_length=10, shuffle=False)
    batch = buf.next_batch(5)
    assert [len(p) for p in batch.prompt_ids] == [23, 23, 50, 50, 25]
    assert [len(r) for r in batch.response_ids] == [6, 10, 6, 10, 10]
    eos = tiny_tokenizer.eos_token_id
    assert batch.response_ids[1] == tiny_tokenizer.encode("r" * 10, add_special_tokens=False)  # EOS cut off
    assert batch.response_ids[4][-1] == eos
    # left truncation: the end of the prompt (the opened assistant turn) survives
    assert tiny_tokenizer.decode(batch.prompt_ids[2]).endswith("q<|im_end|>\n<|im_start|>assistant\n")
    assert batch.metrics["expert_truncated"] == 3 and batch.metrics["expert_dropped"] == 0
    assert batch.metrics["expert_tokens"] == 42
    assert {k: buf.stats[k] for k in ("truncated", "prompt_truncated", "response_truncated", "dropped")} == {
        "truncated": 3,
        "prompt_truncated": 2,
        "response_truncated": 2,
        "dropped": 0,
    }


def test_drop_skips_rows_over_the_limits_and_counts_them(tmp_path, tiny_tokenizer):
    path = _write(tmp_path / "long.parquet", _long_rows(), 2)
    buf = ExpertBuffer(
        path, tiny_tokenizer, max_prompt_length=50, max_response_length=10, shuffle=False, overflow="drop"
    )
    batch = buf.next_batch(3)  # rows 0 and 4 fit; then row 0 of epoch 1
    assert batch.row_ids == [(str(path), 0), (str(path), 4), (str(path), 0)]
    assert batch.metrics["expert_dropped"] == 3 and batch.metrics["expert_truncated"] == 0
    assert buf.stats["dropped"] == 3 and buf.stats["rows_read"] == 6 and buf.stats["rows_served"] == 3
    assert batch.metrics["expert_epoch"] == pytest.approx(1 + 1 / 5)


def test_drop_with_no_row_that_fits_raises(tmp_path, tiny_tokenizer):
    path = _write(tmp_path / "long.parquet", _long_rows()[1:4], 2)
    buf = ExpertBuffer(path, tiny_tokenizer, max_prompt_length=50, max_response_length=10, overflow="drop")
    with pytest.raises(ExpertDataError, match="every expert row exceeds"):
        buf.next_batch(2)


def test_messages_schema_renders_prompt_and_ends_response_with_eos(data_dir, tiny_tokenizer):
    buf = _buffer(data_dir / "b.parquet", tiny_tokenizer, shuffle=False)
    batch = buf.next_batch(2)
    assert tiny_tokenizer.decode(batch.response_ids[1]) == "answer b1<|im_end|>"
    assert tiny_tokenizer.decode(batch.prompt_ids[1]) == (
        "<|im_start|>system\nbe brief<|im_end|>\n"
        "<|im_start|>user\nquestion b1<|im_end|>\n<|im_start|>assistant\n"
    )
    assert batch.quality.tolist() == [0.0, 1.0]
    assert batch.ref_logp is None
    assert batch.data_source == ["expert", "expert"]
    assert batch.metrics["expert_tokens"] == 20 and batch.metrics["expert_rows"] == 2


def test_prompt_response_schema_with_string_and_message_prompts(tmp_path, tiny_tokenizer):
    rows = [
        {"prompt": "What is 2+2?", "response": "4", "data_source": "math"},
        {"prompt": "Say hi", "response": "hi<|im_end|>", "data_source": None},  # EOS already there
    ]
    path = _write(tmp_path / "pr.parquet", rows, 5)
    batch = ExpertBuffer(
        path, tiny_tokenizer, max_prompt_length=64, max_response_length=16, shuffle=False
    ).next_batch(2)
    assert (
        tiny_tokenizer.decode(batch.prompt_ids[0])
        == "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n"
    )
    assert tiny_tokenizer.decode(batch.response_ids[0]) == "4<|im_end|>"
    assert tiny_tokenizer.decode(batch.response_ids[1]) == "hi<|im_end|>"  # not doubled
    assert batch.data_source == ["math", "expert"]
    assert batch.quality is None

    chat = [
        {"prompt": [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}], "response": "A"}
    ]
    path = _write(tmp_path / "chat.parquet", chat, 5)
    batch = ExpertBuffer(path, tiny_tokenizer, max_prompt_length=64, max_response_length=16).next_batch(1)
    assert tiny_tokenizer.decode(batch.prompt_ids[0]) == (
        "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\n"
    )


def test_tools_column_and_chat_template_kwargs_reach_the_template(tmp_path, tiny_tokenizer):
    tok = copy.deepcopy(tiny_tokenizer)
    tok.chat_template = (
        "{% if tools %}TOOLS={{ tools | map(attribute='name') | join(',') }};{% endif %}"
        "{% if style %}STYLE={{ style }};{% endif %}"
        "{% for m in messages %}{{ m['role'] }}:{{ m['content'] }};{% endfor %}"
        "{% if add_generation_prompt %}assistant:{% endif %}"
    )
    rows = [
        {
            "messages": [{"role": "user", "content": "weather?"}, {"role": "assistant", "content": "[w()]"}],
            "tools": json.dumps([{"name": "w"}, {"name": "x"}]),
        }
    ]
    path = _write(tmp_path / "tools.parquet", rows, 5)
    buf = ExpertBuffer(
        path, tok, max_prompt_length=64, max_response_length=16, chat_template_kwargs={"style": "s"}
    )
    batch = buf.next_batch(1)
    assert tok.decode(batch.prompt_ids[0]) == "TOOLS=w,x;STYLE=s;user:weather?;assistant:"


def test_ref_logp_is_served_aligned_and_truncated_with_the_response(tmp_path, tiny_tokenizer):
    rows = [
        {"prompt": "p", "response": "abc", "ref_logp": [-0.1, -0.2, -0.3, -0.4]},  # 3 tokens + EOS
        {"prompt": "p", "response": "abcdefgh", "ref_logp": [-float(i) for i in range(9)]},
    ]
    path = _write(tmp_path / "ref.parquet", rows, 5)
    buf = ExpertBuffer(path, tiny_tokenizer, max_prompt_length=64, max_response_length=5, shuffle=False)
    batch = buf.next_batch(2)
    assert batch.ref_logp == [[-0.1, -0.2, -0.3, -0.4], [0.0, -1.0, -2.0, -3.0, -4.0]]
    assert [len(r) for r in batch.response_ids] == [4, 5]
    padded = batch.to_padded(prompt_length=40, response_length=6, pad_token_id=tiny_tokenizer.pad_token_id)
    assert padded["ref_logp"][0].tolist() == pytest.approx([-0.1, -0.2, -0.3, -0.4, 0.0, 0.0])


def test_inputs_directory_uri_and_explicit_filesystem(data_dir, tiny_tokenizer):
    names = [(str(data_dir / n), 0) for n in ROWS_PER_FILE]
    by_dir = _buffer(data_dir, tiny_tokenizer, shuffle=False)
    assert list(by_dir.schemas) == [n for n, _ in names]
    assert by_dir.num_rows == TOTAL
    by_uri = _buffer(f"file://{data_dir}/c.parquet", tiny_tokenizer, shuffle=False)
    assert by_uri.next_batch(1).row_ids == [(f"file://{data_dir}/c.parquet", 0)]
    fs = pafs.SubTreeFileSystem(str(data_dir), pafs.LocalFileSystem())
    sub = _buffer(["b.parquet", "a.parquet"], tiny_tokenizer, shuffle=False, filesystem=fs)
    assert sub.num_rows == 33 and sub.next_batch(1).row_ids == [("b.parquet", 0)]
    sub_dir = _buffer("", tiny_tokenizer, filesystem=fs)
    assert sub_dir.num_rows == TOTAL


def test_any_pyarrow_filesystem_works_here_an_fsspec_memory_store(data_dir, tiny_tokenizer):
    fsspec = pytest.importorskip("fsspec")
    memory = fsspec.filesystem("memory")
    memory.pipe("/bucket/expert/a.parquet", (data_dir / "a.parquet").read_bytes())
    fs = pafs.PyFileSystem(pafs.FSSpecHandler(memory))
    buf = _buffer("/bucket/expert", tiny_tokenizer, filesystem=fs, shuffle=False)
    batch = buf.next_batch(3)
    assert buf.num_rows == 20 and batch.row_ids[2] == ("/bucket/expert/a.parquet", 2)
    assert tiny_tokenizer.decode(batch.response_ids[2]) == "answer a2<|im_end|>"


def test_window_holds_at_most_the_configured_row_groups(data_dir, tiny_tokenizer):
    buf = _buffer(data_dir, tiny_tokenizer, shuffle_window_row_groups=2)
    for _ in range(10):
        buf.next_batch(5)
        assert len(buf._segments) <= 2
        assert sum(t.num_rows for _, _, t in buf._segments) <= 2 * 7


# -- prefetch: the next batch is built in the background, consumed only when served -------------


@pytest.mark.parametrize("overflow", ["truncate", "drop"])
def test_prefetch_serves_the_same_rows_counters_and_states(data_dir, tiny_tokenizer, overflow):
    kw = dict(seed=7, overflow=overflow, max_response_length=10)  # "answer a12" + EOS is over 10
    sizes = [5, 5, 7, 7, 3, 20, 20, 9, 9, 9]  # 94 rows: crosses the epoch; n changes between calls
    plain = _buffer(data_dir, tiny_tokenizer, **kw)
    ahead = _buffer(data_dir, tiny_tokenizer, prefetch=True, **kw)
    for n in sizes:
        a, b = plain.next_batch(n), ahead.next_batch(n)
        assert (a.row_ids, a.prompt_ids, a.response_ids, a.metrics) == (
            b.row_ids,
            b.prompt_ids,
            b.response_ids,
            b.metrics,
        )
        assert torch.equal(a.quality, b.quality)
        assert ahead._pending is not None  # exactly one batch under way after every call
        ahead._pending.result()  # let it finish: the state must still describe served rows only
        assert ahead.state_dict() == plain.state_dict()
    assert ahead.stats == plain.stats and ahead.stats["rows_served"] == sum(sizes)
    ahead.close()
    assert ahead._pending is None and ahead._executor is None


@pytest.mark.parametrize("split", [1, 4, 9])
def test_prefetch_resume_mid_run_is_exact(data_dir, tiny_tokenizer, split):
    sizes = [5] * 16  # 80 rows > one epoch of 53
    uninterrupted = _serve(_buffer(data_dir, tiny_tokenizer, seed=11), sizes)
    first = _buffer(data_dir, tiny_tokenizer, seed=11, prefetch=True)
    first.prefetch(5)  # as the trainer does before step 1
    before = _serve(first, sizes[:split])
    first._pending.result()  # the prefetched batch (rows split*5 .. split*5+4) is built, not consumed
    state = json.loads(json.dumps(first.state_dict()))
    assert state["stats"]["rows_served"] == 5 * split
    resumed = _buffer(data_dir, tiny_tokenizer, seed=11, prefetch=True)
    resumed.prefetch(5)  # built from the start of the data: must be discarded by load_state_dict
    resumed.load_state_dict(state)
    assert resumed._pending is None
    after = _serve(resumed, sizes[split:])
    assert before + after == uninterrupted
    # the interrupted run, had it continued, serves the same rows too
    assert _serve(first, sizes[split:]) == after


def test_prefetch_bad_row_raises_at_the_call_that_serves_it(tmp_path, tiny_tokenizer):
    rows = [{"prompt": f"q{i}", "response": "ab", "ref_logp": [-0.5, -0.5, -0.5]} for i in range(6)]
    rows[4]["ref_logp"] = [-0.5]  # 1 value for 3 response tokens (2 + EOS)
    path = _write(tmp_path / "bad.parquet", rows, 6)
    buf = ExpertBuffer(
        path, tiny_tokenizer, max_prompt_length=64, max_response_length=8, shuffle=False, prefetch=True
    )
    assert [r[1] for r in buf.next_batch(2).row_ids] == [0, 1]  # the prefetch of rows 2-3 is fine
    assert [r[1] for r in buf.next_batch(2).row_ids] == [2, 3]  # the prefetch of rows 4-5 fails
    state = buf.state_dict()
    with pytest.raises(ExpertDataError, match=r"bad.parquet.*row 4.*ref_logp"):
        buf.next_batch(2)
    assert buf.state_dict() == state  # nothing consumed
    with pytest.raises(ExpertDataError, match="row 4"):
        buf.next_batch(2)  # the same rows again, built in the foreground this time


def test_prefetch_tokenizes_with_its_own_tokenizer_copy(data_dir, tiny_tokenizer):
    buf = _buffer(data_dir, tiny_tokenizer, prefetch=True)
    assert buf._tokenize.tokenizer is not tiny_tokenizer
    assert _buffer(data_dir, tiny_tokenizer)._tokenize.tokenizer is tiny_tokenizer
    with pytest.raises(ValueError, match="positive int"):
        buf.prefetch(0)

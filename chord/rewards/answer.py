"""Answer extraction from model responses: the last `\\boxed{...}` and trailing EOS text.

Pure string work (no sympy), so it is safe to run in the caller's thread: nothing here can
take more than linear time in the length of the response.
"""

from __future__ import annotations

from collections.abc import Iterable

# EOS markers of the chat templates we use (ChatML/Qwen, Llama 3, generic). A response decoded
# with `skip_special_tokens=False` may end with one of them.
COMMON_EOS_TEXTS: tuple[str, ...] = ("<|im_end|>", "<|endoftext|>", "<|eot_id|>", "</s>", "<eos>")

_BOX_COMMANDS = ("\\boxed", "\\fbox")


def strip_eos(text: str, eos_texts: str | Iterable[str] | None = COMMON_EOS_TEXTS) -> str:
    """`text` without surrounding whitespace and without trailing EOS markers (repeated ones too)."""
    if eos_texts is None:
        return text.strip()
    markers = (eos_texts,) if isinstance(eos_texts, str) else tuple(eos_texts)
    out = text.strip()
    changed = True
    while changed:
        changed = False
        for marker in markers:
            if marker and out.endswith(marker):
                out = out[: -len(marker)].rstrip()
                changed = True
    return out


def _braced_content(text: str, open_idx: int) -> tuple[str, int] | None:
    """Content of the brace group opening at `text[open_idx] == "{"` and the index after it.

    None when the group is never closed (e.g. a response cut off inside the answer).
    """
    depth = 0
    i = open_idx
    while i < len(text):
        ch = text[i]
        if ch == "\\":  # an escaped brace such as \{ does not open or close a group
            i += 2
            continue
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return text[open_idx + 1 : i], i + 1
        i += 1
    return None


def boxed_answers(text: str) -> list[str]:
    """All complete `\\boxed{...}` / `\\fbox{...}` contents in order of appearance (stripped).

    Also accepts the brace-less form `\\boxed 5` (one token up to whitespace or `$`).
    Unclosed boxes are skipped; empty boxes give "".
    """
    found: list[tuple[int, str]] = []
    for command in _BOX_COMMANDS:
        start = 0
        while True:
            idx = text.find(command, start)
            if idx < 0:
                break
            j = idx + len(command)
            start = j
            if j < len(text) and (text[j].isalpha()):  # e.g. \boxedsomething: another command
                continue
            k = j
            while k < len(text) and text[k] == " ":
                k += 1
            if k < len(text) and text[k] == "{":
                group = _braced_content(text, k)
                if group is not None:
                    found.append((idx, group[0].strip()))
            elif k > j and k < len(text):  # "\boxed 5": one bare token
                end = k
                while end < len(text) and not text[end].isspace() and text[end] != "$":
                    end += 1
                if end > k:
                    found.append((idx, text[k:end]))
    found.sort(key=lambda item: item[0])
    return [content for _, content in found]


def last_boxed_answer(text: str) -> str | None:
    """The content of the last complete `\\boxed{}` in `text`; None if there is none or it is empty."""
    answers = boxed_answers(text)
    return answers[-1] if answers and answers[-1] else None

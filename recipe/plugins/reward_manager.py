"""`reward.reward_manager.name=chord`: verl's naive reward manager that also reports truncation.

verl decodes the response without special tokens and passes no finish reason, so a reward
function cannot tell an answer cut off at `max_response_length` from one that ended. The
paper's math reward scores those -1 (`chord.rewards.math`); this manager sets
`extra_info["truncated"]` (the response filled its whole length without an EOS) before
handing the row to verl's naive manager unchanged.
"""

from __future__ import annotations

from verl import DataProto
from verl.experimental.reward_loop.reward_manager import register
from verl.experimental.reward_loop.reward_manager.naive import NaiveRewardManager


def response_was_truncated(responses, attention_mask, eos_token_ids: set[int]) -> bool:
    """True when the response uses all its positions and its last token is not an EOS."""
    width = responses.shape[-1]
    valid = int(attention_mask[-width:].sum())
    return valid >= width and int(responses[valid - 1]) not in eos_token_ids


@register("chord")
class ChordRewardManager(NaiveRewardManager):
    async def run_single(self, data: DataProto) -> dict:
        item = data[-1]
        info = item.non_tensor_batch.get("extra_info")
        if isinstance(info, dict):  # the same dict verl's manager passes to the reward function
            eos = self.tokenizer.eos_token_id
            eos_ids = set(eos) if isinstance(eos, list) else {eos}
            info["truncated"] = response_was_truncated(
                item.batch["responses"], item.batch["attention_mask"], eos_ids
            )
        return await super().run_single(data)

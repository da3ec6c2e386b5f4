"""The reward of PAPER.md section 4: resolved (0 or 1) plus a turn penalty.

    reward(resolved=True, turns=25, max_turns=40)     # 1 - 15/30 = 0.5

The turn penalty replaces DAPO's token-length penalty: for an episode of `turns` assistant turns,
R_len = (threshold - turns) / (max_turns - threshold) once `turns` reaches `threshold` (10 in the
paper), else 0. It falls linearly to -1 at `max_turns` and applies to successes and failures
alike, so a success in `max_turns` turns scores 0 and a failure in `max_turns` turns -1. No format
penalty, no KL, no shaping.
"""

from __future__ import annotations


def turn_penalty(turns: int, max_turns: int, threshold: int = 10) -> float:
    """(threshold - turns) / (max_turns - threshold) for turns >= threshold, else 0; in [-1, 0]."""
    if threshold < 0:
        raise ValueError(f"turn penalty threshold must be >= 0, got {threshold}")
    if max_turns <= threshold:
        raise ValueError(
            f"max_turns ({max_turns}) must exceed the turn penalty threshold ({threshold})"
        )
    if not 0 <= turns <= max_turns:
        raise ValueError(f"turns must be in [0, max_turns={max_turns}], got {turns}")
    if turns < threshold:
        return 0.0
    return (threshold - turns) / (max_turns - threshold)


def reward(resolved: bool, turns: int, max_turns: int, threshold: int = 10) -> float:
    """1 if resolved else 0, plus `turn_penalty(turns, max_turns, threshold)`; in [-1, 1]."""
    return (1.0 if resolved else 0.0) + turn_penalty(turns, max_turns, threshold)

"""How a flow turns its parameters into settings: the named config's section (`configs/<name>.yaml`),
then every parameter the caller gave (not None). Errors name the config file and the key, and
happen before any work."""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger

from swerl.config import stage_settings

NOT_SETTINGS = ("config", "data", "force")


def settings(stage: str, params: dict[str, Any]) -> dict[str, Any]:
    """`params` is the flow's `locals()` at its first line; `config`, `data` and `force` are not
    settings. Logs where the values came from."""
    config = params.get("config")
    given = {k: v for k, v in params.items() if k not in NOT_SETTINGS}
    merged = stage_settings(config, stage, given)
    if config:
        from_config = sorted(k for k in merged if given.get(k) is None)
        get_run_logger().info(
            "settings of %s: config %s%s",
            stage,
            config,
            f" (from it: {', '.join(from_config)})" if from_config else "",
        )
    return merged

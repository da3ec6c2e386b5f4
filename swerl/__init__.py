"""swerl: multi-turn reinforcement learning for software-engineering LLM agents.

The library behind the pipeline's stages: `swerl.lake` (versioned Parquet datasets), `swerl.swe`
(SWE task ingestion). Nothing here imports Prefect; flows in `flows/` wire these functions.
"""

__version__ = "0.1.0"

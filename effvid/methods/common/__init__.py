"""What several methods share: straight-through Gumbel and soft gates, temperature schedules,
decision grouping and sparse-execution helpers. Nothing here knows a particular method."""

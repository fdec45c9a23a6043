"""The data lake: raw, processed, artifacts and access-log buckets (settings, component)."""

"""Amplification: Spark Ads behind creators' posts that work (`winners`, `boosts`)."""

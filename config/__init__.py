"""Rally's configuration: settings from the environment, campaign files, default rules."""

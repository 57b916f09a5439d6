"""The service layer: plain functions taking their collaborators (session, settings, clock)."""

"""The staff console's reads: a campaign's pipeline, its lead sync health, its follow-up log and
its audit log, each section one or two bounded queries (`console`)."""

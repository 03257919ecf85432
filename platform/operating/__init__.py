"""Operating the platform from the command line: backfills, checks of what is committed, status."""

"""A user's project: `skewless init` scaffolds a dataset in the user's own repository."""

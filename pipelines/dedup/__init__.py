"""The ``skewless dedup`` job: blocking, matching, clustering and a review policy."""

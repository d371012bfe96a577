"""The ``skewless labels`` job: consensus, agreement and HLP from several annotators; the label join."""

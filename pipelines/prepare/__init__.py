"""The ``skewless run`` job: split, analyze and transform, analysis cache, export, parity."""

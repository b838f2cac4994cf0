"""`make bench`: each benchmark times a candidate against a baseline in the same run and
reports the ratio (machines differ; ratios measured side by side are what we compare)."""

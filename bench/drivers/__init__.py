"""Programs the benchmark runs *inside* the checkout under test (by file path, with that
checkout's PYTHONPATH), so they import the product's own code, not this tree's."""

"""Small C drivers built with AddressSanitizer and UBSan around parts of the data path (see build.py)."""

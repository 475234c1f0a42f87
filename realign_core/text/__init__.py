"""Text: the frozen all-MiniLM-L6-v2 sentence encoder (``encoder``), cached per caption."""

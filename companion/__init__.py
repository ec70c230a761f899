"""Minimal, tested implementations behind the chapters of *Generative AI on a laptop CPU*.

One module per concept: ``data`` (toy sets, digits, text), ``train`` (one
training helper), ``plot`` (the book's figures), ``utils`` (seeding, devices,
showing source), and one module per model family.
"""
__version__ = "0.1.0"

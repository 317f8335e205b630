"""Settings a program changes at start-up, after importing them."""

DEBUG = False

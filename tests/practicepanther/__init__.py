"""Tests for the PracticePanther client area."""

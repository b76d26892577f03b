"""Figures for the notebooks (seaborn/matplotlib). Imports from every layer below; nothing imports it."""

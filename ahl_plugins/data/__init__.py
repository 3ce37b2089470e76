"""Inputs: image folders, arrays and tables, ELPV, and the OSAD split protocols."""

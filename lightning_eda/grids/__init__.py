"""Gridded GLM products on the GOES ABI fixed grid: FED, MFA, TOE, AFA and FCD as CF netCDF and a cell table.

:mod:`.fixed_grid` builds the grid from the granules' own projection attributes, :mod:`.products` grids an hour of
flashes, groups and events into 1-minute frames and N-minute accumulations, :mod:`.netcdf` writes them. No Dagster
here.
"""

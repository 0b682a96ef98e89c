"""The report layer (torch-free): store -> selection -> aggregation over seeds -> Table -> renderers."""

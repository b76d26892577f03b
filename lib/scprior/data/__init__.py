"""Raw files -> processed AnnData: fetching pinned sources, readers, validation, simulators."""

"""Gene knowledge: gene tables (symbols, positions, orthologs, GO, regulons) and gene embeddings."""

"""Readers of the raw knowledge files, each on a tiny file written here in exactly that format."""

from __future__ import annotations

import pickle
import sqlite3

import numpy as np
import pandas as pd
import pytest

from scprior.errors import ScpriorInputError
from scprior.knowledge import orgdb
from scprior.knowledge.blastdb import BlastProteinDb, read_index, write_protein_db
from scprior.knowledge.gene_sets import gene_set_table, read_gmt, write_gmt
from scprior.knowledge.ncbi_genes import read_ncbi_gene_module
from scprior.knowledge.orthologs import read_biomart_orthologs
from scprior.knowledge.regulon import read_priori_regulon

NCBI_MODULE = '''"""Data downloaded from NCBI Gene data converted into Python data."""

# Copyright (C) 2014-2018, DV Klopfenstein. All rights reserved

downloaded = "2016_02_22" # 2 items

import collections as cx

NtData = cx.namedtuple('NtData', 'tax_id Org_name GeneID CurrentID Status Symbol Aliases description other_designations map_location chromosome genomic_nucleotide_accession_version start_position_on_the_genomic_accession end_position_on_the_genomic_accession orientation exon_count OMIM no_hdr0')
GENEID2NT = {
  21846 : NtData(tax_id=10090, Org_name='Mus musculus', GeneID=21846, CurrentID=0, Status='live', Symbol='Tie1', Aliases='D430008P04Rik, TIE, tie-1', description='tyrosine kinase with immunoglobulin-like and EGF-like domains 1', other_designations='tyrosine kinase receptor 1|TIE-1', map_location='4 54.67 cM', chromosome='4', genomic_nucleotide_accession_version='NC_000070.6', start_position_on_the_genomic_accession=118471191, end_position_on_the_genomic_accession=118489849, orientation='minus', exon_count=23, OMIM='', no_hdr0=''),
  16596 : NtData(tax_id=10090, Org_name='Mus musculus', GeneID=16596, CurrentID=0, Status='live', Symbol='Klf1', Aliases='Eklf, Nan', description="Kruppel-like factor 1 (erythroid)", other_designations='', map_location='8 C3', chromosome='8', genomic_nucleotide_accession_version='', start_position_on_the_genomic_accession='', end_position_on_the_genomic_accession='', orientation='plus', exon_count=3, OMIM='', no_hdr0=''),
}
'''


def test_ncbi_gene_module_is_parsed_not_executed(tmp_path):
    path = tmp_path / "genes_NCBI_10090_ProteinCoding.py"
    path.write_text(NCBI_MODULE + "\nraise SystemExit('never executed')\n")
    genes = read_ncbi_gene_module(path)
    assert genes["symbol"].tolist() == ["Tie1", "Klf1"]
    tie1 = genes.iloc[0]
    assert (tie1.entrez_id, tie1.chromosome, tie1.start, tie1.end, tie1.strand) == (21846, "4", 118471191, 118489849, "-")
    assert tie1.other_designations == "tyrosine kinase receptor 1|TIE-1" and tie1.accession == "NC_000070.6"
    assert genes.iloc[1].start == -1 and genes.iloc[1].strand == "+"
    (tmp_path / "empty.py").write_text("x = 1\n")
    with pytest.raises(ScpriorInputError, match="no NtData"):
        read_ncbi_gene_module(tmp_path / "empty.py")
    with pytest.raises(ScpriorInputError, match="scprior.data.fetch"):
        read_ncbi_gene_module(tmp_path / "missing.py")


@pytest.fixture
def tiny_orgdb(tmp_path):
    """org.Hs.eg.sqlite with the real schema (the tables the knowledge layer reads), 3 genes."""
    path = tmp_path / "org.Hs.eg.sqlite"
    con = sqlite3.connect(path)
    con.executescript("""
    CREATE TABLE metadata (name VARCHAR(80) PRIMARY KEY, value VARCHAR(255));
    CREATE TABLE genes (_id INTEGER PRIMARY KEY, gene_id VARCHAR(10) NOT NULL UNIQUE);
    CREATE TABLE gene_info (_id INTEGER NOT NULL UNIQUE, gene_name VARCHAR(255) NOT NULL, symbol VARCHAR(80) NOT NULL);
    CREATE TABLE genetype (_id INTEGER NOT NULL, gene_type VARCHAR(20) NOT NULL);
    CREATE TABLE alias (_id INTEGER NOT NULL, alias_symbol VARCHAR(80) NOT NULL);
    CREATE TABLE chromosome_locations (_id INTEGER NOT NULL, seqname VARCHAR(20) NOT NULL, start_location INTEGER NOT NULL, end_location INTEGER NOT NULL);
    CREATE TABLE go_bp (_id INTEGER NOT NULL, go_id CHAR(10) NOT NULL, evidence CHAR(3) NOT NULL);
    CREATE TABLE go_mf (_id INTEGER NOT NULL, go_id CHAR(10) NOT NULL, evidence CHAR(3) NOT NULL);
    CREATE TABLE go_cc (_id INTEGER NOT NULL, go_id CHAR(10) NOT NULL, evidence CHAR(3) NOT NULL);
    CREATE TABLE uniprot (_id INTEGER NOT NULL, uniprot_id CHAR(12) NOT NULL);
    CREATE TABLE pfam (_id INTEGER NOT NULL, ipi_id CHAR(11), pfam_id CHAR(7) NULL);
    INSERT INTO metadata VALUES ('EGSOURCEDATE', '2022-Sep12');
    INSERT INTO genes VALUES (1, '1'), (2, '3630'), (3, '10661');
    INSERT INTO gene_info VALUES (1, 'alpha-1-B glycoprotein', 'A1BG'), (2, 'insulin', 'INS'), (3, 'KLF transcription factor 1', 'KLF1');
    INSERT INTO genetype VALUES (1, 'protein-coding'), (2, 'protein-coding'), (3, 'protein-coding');
    INSERT INTO alias VALUES (1, 'A1BG'), (1, 'ABG'), (2, 'IDDM'), (3, 'EKLF');
    INSERT INTO chromosome_locations VALUES (1, '19', -58345182, -58353492), (2, '11', -2159778, -2161209),
        (2, '11_KI270721v1_random', -100, -200), (3, '19', 12884422, 12887201), (3, '19', 12884000, 12887300);
    INSERT INTO go_mf VALUES (3, 'GO:0003700', 'IDA'), (3, 'GO:0003700', 'IBA');
    INSERT INTO go_bp VALUES (2, 'GO:0006006', 'TAS'), (3, 'GO:0030218', 'IMP');
    INSERT INTO uniprot VALUES (2, 'P01308'), (3, 'Q13351'), (3, 'A0A000');
    INSERT INTO pfam VALUES (3, 'IPI1', 'PF00096'), (3, 'IPI2', 'PF00096');
    """)
    con.commit()
    con.close()
    return path


def test_orgdb_genes_positions_and_annotations(tiny_orgdb):
    genes = orgdb.human_genes(tiny_orgdb).set_index("symbol")
    assert genes.loc["A1BG", "start"] == 58345183 and genes.loc["A1BG", "end"] == 58353492  # 0-based -> 1-based
    assert genes.loc["A1BG", "strand"] == "-" and genes.loc["KLF1", "strand"] == "+"
    assert genes.loc["KLF1", "start"] == 12884001 and genes.loc["KLF1", "end"] == 12887300  # widest span
    assert genes.loc["INS", "chromosome"] == "11"  # the unplaced contig row is ignored
    assert genes.loc["A1BG", "aliases"] == "ABG"  # the official symbol is not its own alias
    ann = orgdb.go_annotations(tiny_orgdb)
    assert len(ann) == 4 and set(ann["ontology"]) == {"MF", "BP"}
    assert ann[ann.symbol == "KLF1"]["evidence"].tolist().count("IDA") == 1
    assert set(orgdb.uniprot_map(tiny_orgdb)["uniprot"]) == {"P01308", "Q13351", "A0A000"}
    assert orgdb.pfam_map(tiny_orgdb).values.tolist() == [["KLF1", "PF00096"]]
    assert orgdb.metadata(tiny_orgdb)["EGSOURCEDATE"] == "2022-Sep12"
    with pytest.raises(ScpriorInputError, match="scprior.data.fetch"):
        orgdb.human_genes(tiny_orgdb.with_name("missing.sqlite"))


def test_go_terms(tmp_path):
    path = tmp_path / "GO.sqlite"
    con = sqlite3.connect(path)
    con.executescript("""
    CREATE TABLE go_term (_id INTEGER PRIMARY KEY, go_id CHAR(10) NOT NULL UNIQUE, term VARCHAR(255) NOT NULL,
                          ontology VARCHAR(9) NOT NULL, definition TEXT NULL);
    INSERT INTO go_term VALUES (1, 'all', 'all', 'universal', NULL), (2, 'GO:0003700', 'DNA-binding transcription factor activity', 'MF', 'A protein...'),
                               (3, 'GO:0000001', 'mitochondrion inheritance', 'BP', NULL);
    """)
    con.commit()
    con.close()
    terms = orgdb.go_terms(path)
    assert terms["go_id"].tolist() == ["GO:0000001", "GO:0003700"]
    assert terms["definition"].tolist() == ["", "A protein..."]


BIOMART = """Gene stable ID,Gene name,Mouse gene name,Mouse gene stable ID,Mouse homology type,"Mouse orthology confidence [0 low, 1 high]",Mouse Gene-order conservation score
ENSG00000210049,MT-TF,,,,,
ENSG1,KLF1,Klf1,ENSMUSG1,ortholog_one2one,1.0,100.0
ENSG1b,KLF1,Klf1,ENSMUSG1,ortholog_one2one,0.0,100.0
ENSG2,AMY1A,Amy1,ENSMUSG2,ortholog_many2many,0.0,50.0
ENSG3,AMY2A,Amy1,ENSMUSG2,ortholog_many2many,1.0,50.0
ENSG4,PAR1,Par1,ENSMUSG4,ortholog_one2one,1.0,75.0
ENSG5,PAR1,Par1b,ENSMUSG5,ortholog_one2one,1.0,75.0
ENSG6,CD24,Cd24a,ENSMUSG6,ortholog_one2many,0.0,
"""


def test_biomart_orthologs(tmp_path):
    path = tmp_path / "human_to_mouse.csv"
    path.write_text(BIOMART)
    orth = read_biomart_orthologs(path).set_index(["human", "mouse"])
    assert len(orth) == 6  # the empty MT-TF row is gone, the duplicated KLF1 pair merged
    assert orth.loc[("KLF1", "Klf1"), "homology_type"] == "one2one"
    assert orth.loc[("KLF1", "Klf1"), "confidence"] == 1.0  # highest confidence kept
    # Ensembl calls PAR1 one2one twice: not a bijection, so relabelled (Ensembl's label kept)
    assert orth.loc[("PAR1", "Par1"), "homology_type"] == "one2many"
    assert orth.loc[("PAR1", "Par1"), "ensembl_type"] == "one2one"
    assert orth.loc[("AMY1A", "Amy1"), "homology_type"] == "many2many"
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ScpriorInputError, match="not a BioMart"):
        read_biomart_orthologs(tmp_path / "bad.csv")


def test_priori_regulon(tmp_path):
    path = tmp_path / "primary_intx_regulon.pkl"
    frame = pd.DataFrame({"UpGene": ["MEF2B", "MEF2B", "MEF2B", "SP1"], "Type": ["controls-expression-of"] * 4,
                          "DownGene": ["BCL6", "BCL6", "MEF2B", "EPHB6"]})
    frame.to_pickle(path)
    reg = read_priori_regulon(path)
    assert reg[["tf", "target"]].values.tolist() == [["MEF2B", "BCL6"], ["SP1", "EPHB6"]]
    assert set(reg["interaction"]) == {"controls-expression-of"}
    with open(tmp_path / "bad.pkl", "wb") as fh:
        pickle.dump({"a": 1}, fh)
    with pytest.raises(ScpriorInputError, match="not priori's regulon"):
        read_priori_regulon(tmp_path / "bad.pkl")


def test_gmt_round_trip_and_mouse_mapping(tmp_path):
    path = tmp_path / "h.gmt"
    path.write_text("HALLMARK_A\thttp://x\tKLF1\tGATA1\tKLF1\nHALLMARK_B\t\tTP53\n")
    sets = read_gmt(path)
    assert sets == {"HALLMARK_A": ["KLF1", "GATA1"], "HALLMARK_B": ["TP53"]}
    assert read_gmt(write_gmt(sets, tmp_path / "copy.gmt")) == sets
    table = gene_set_table(sets, {"KLF1": "Klf1", "TP53": "Trp53"}, collection="hallmark")
    mouse = table[table.species == "mouse"]
    assert mouse["symbol"].tolist() == ["Klf1", "Trp53"] and mouse["borrowed"].all()
    (tmp_path / "bad.gmt").write_text("only_a_name\n")
    with pytest.raises(ScpriorInputError, match="not a GMT line"):
        read_gmt(tmp_path / "bad.gmt")


def test_blast_protein_db_round_trip(tmp_path):
    long_title = "P01308|" + ",".join(["GO:0005576"] * 40)  # > 127 bytes: long-form BER length
    records = [("C6DJ78|GO:0005737", "MSENQQINQKQQ"), (long_title, "MALWMRLLPLLALLALWGPDPAAAFVNQHLCG"),
               ("Q13351|GO:0005634", "MATAETALPSXU")]
    write_protein_db(tmp_path / "goasp.fasta", records, title="dataset_201401/CCO/goasp.fasta")
    index = read_index(tmp_path / "goasp.fasta.pin")
    assert index.n_sequences == 3 and index.title == "dataset_201401/CCO/goasp.fasta"
    assert index.total_residues == sum(len(s) for _, s in records)
    db = BlastProteinDb(tmp_path / "goasp.fasta")
    assert db.titles() == [t for t, _ in records]
    assert db.accessions() == ["C6DJ78", "P01308", "Q13351"]
    assert [db.sequence(i) for i in range(3)] == [s for _, s in records]
    with pytest.raises(IndexError):
        db.sequence(3)
    (tmp_path / "goasp.fasta.psq").unlink()
    with pytest.raises(ScpriorInputError, match="scprior.data.fetch"):
        BlastProteinDb(tmp_path / "goasp.fasta")


def test_blast_index_refuses_other_formats(tmp_path):
    (tmp_path / "x.pin").write_bytes(np.array([5, 1, 0, 0], dtype=">i4").tobytes())
    with pytest.raises(ScpriorInputError, match="version 5"):
        read_index(tmp_path / "x.pin")
    (tmp_path / "n.pin").write_bytes(np.array([4, 0, 0, 0], dtype=">i4").tobytes())
    with pytest.raises(ScpriorInputError, match="nucleotide"):
        read_index(tmp_path / "n.pin")

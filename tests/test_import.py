import pandas as pd
import pytest

from guad.cli import main
from guad.store import Store

HEADER = "scan_id,path,site,split,label,finding,lesion_ml,seed\n"
GOOD = HEADER + ("a,a.nii.gz,s1,val,normal,,,1\n"
                 "b,b.nii.gz,s1,test,critical,ich,3.5,2\n"
                 "c,,s2,test,benign,lacune,,\n")
SCORES = "scan_id,model,score\na,cmm,0.1\na,fgm,0.2\nb,cmm,0.9\n"


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def counts(db):
    with Store(db).read() as con:
        return tuple(con.execute(f"SELECT count(*) FROM {t}").fetchall()[0][0]
                     for t in ("scans", "scoring_runs", "scores"))


def test_import_manifest_and_scores(tmp_path, capsys):
    db = str(tmp_path / "g.duckdb")
    assert main(["import", "--db", db, "--manifest", write(tmp_path, "m.csv", GOOD),
                 "--scores", write(tmp_path, "s.csv", SCORES)]) == 0
    out = capsys.readouterr().out
    assert "imported 3 scans (train 0, val 1, test 2)" in out and "imported 3 scores" in out
    assert counts(db) == (3, 2, 3)
    f = Store(db).frame().set_index("scan_id")
    assert f.loc["a", "score_fgm"] == 0.2 and f.loc["b", "score_cmm"] == 0.9
    assert f.loc["b", "finding"] == "ich" and f.loc["b", "lesion_ml"] == 3.5
    # the same files again: nothing twice
    assert main(["import", "--db", db, "--manifest", str(tmp_path / "m.csv"),
                 "--scores", str(tmp_path / "s.csv")]) == 0
    assert counts(db) == (3, 2, 3)


def test_labels_only_csv_with_minimal_columns(tmp_path):
    db = str(tmp_path / "g.duckdb")
    text = "scan_id,site,split,label\nx1,mine,val,normal\nx2,mine,test,critical\n"
    assert main(["import", "--db", db, "--manifest", write(tmp_path, "l.csv", text)]) == 0
    s = Store(db).scans().set_index("scan_id")
    assert s.loc["x2", "label"] == "critical" and pd.isna(s.loc["x2", "path"])


@pytest.mark.parametrize("manifest,scores,message", [
    (GOOD.replace("b,b.nii.gz,s1,test,critical", "b,b.nii.gz,s1,test,criticall"), None,
     r"line 3 \(scan 'b'\): unknown label 'criticall'"),
    (GOOD + "a,x.nii.gz,s3,test,normal,,,\n", None,
     r"line 5: duplicate scan_id 'a' \(first on line 2\)"),
    (GOOD.replace("s1,val", "s1,validation"), None, r"line 2 \(scan 'a'\): unknown split"),
    (GOOD.replace(",label,", ",lable,"), None, r"missing column\(s\) label"),
    (GOOD.replace("3.5", "lots"), None, r"line 3 \(scan 'b'\): lesion_ml 'lots' is not a number"),
    (GOOD, SCORES + "zz,cmm,0.3\n", r"line 5: score for unknown scan 'zz'"),
    (GOOD, SCORES + "c,fgm,high\n", r"line 5 \(scan 'c'\): score 'high' is not a number"),
    (GOOD, SCORES + "c,fgm,nan\n", r"line 5 \(scan 'c'\): score 'nan' is not a finite number"),
    (GOOD, SCORES + "c,xgm,0.1\n", r"line 5 \(scan 'c'\): unknown model 'xgm'"),
    (GOOD, SCORES + "a,cmm,0.5\n", r"line 5: duplicate cmm score for scan 'a'"),
    (GOOD, "scan_id,score\na,0.1\n", r"missing column\(s\) model"),
])
def test_bad_rows_are_named_and_nothing_is_half_imported(tmp_path, capsys, manifest, scores,
                                                         message):
    db = str(tmp_path / "g.duckdb")
    # a store that already holds one scan
    assert main(["import", "--db", db, "--manifest",
                 write(tmp_path, "first.csv", "scan_id,site,split,label\nold,s0,val,normal\n")]) == 0
    before = counts(db)
    argv = ["import", "--db", db, "--manifest", write(tmp_path, "m.csv", manifest)]
    if scores is not None:
        argv += ["--scores", write(tmp_path, "s.csv", scores)]
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    assert pd.Series([err]).str.contains(message).all(), err
    assert counts(db) == before  # neither the manifest's scans nor any score went in
    assert list(Store(db).scans()["scan_id"]) == ["old"]


def test_scores_may_refer_to_scans_already_in_the_store(tmp_path):
    db = str(tmp_path / "g.duckdb")
    assert main(["import", "--db", db, "--manifest", write(tmp_path, "m.csv", GOOD)]) == 0
    other = "scan_id,site,split,label\nd,s2,test,normal\n"
    assert main(["import", "--db", db, "--manifest", write(tmp_path, "m2.csv", other),
                 "--scores", write(tmp_path, "s.csv", "scan_id,model,score\na,cmm,1\nd,cmm,2\n")]) == 0
    assert counts(db) == (4, 1, 2)


def test_missing_file_is_a_clear_error(tmp_path, capsys):
    assert main(["import", "--db", str(tmp_path / "g.duckdb"),
                 "--manifest", str(tmp_path / "nope.csv")]) == 2
    assert "manifest file not found" in capsys.readouterr().err

"""Image dataset contracts, and drafting one from a folder, an image or an archive."""

import dataclasses

import pytest
import yaml
from data_platform.cli import main
from data_platform.contracts import ContractError, load_contract, parse_contract

from .image_samples import jpeg, png, write_zip


def test_image_contract_has_the_manifest_columns_and_its_settings():
    c = parse_contract({"name": "photos", "kind": "images",
                        "images": {"size": [64, 32], "fit": "pad", "labels": "labels.csv",
                                   "split": {"train": 0.9, "test": 0.1}}})
    assert [col.name for col in c.columns][:3] == ["key", "member", "format"]
    assert c.images.size == (64, 32) and c.images.labels_csv == "labels.csv"
    assert c.format.accepts("cats/a.JPG") and c.format.accepts("batch.tar.gz")
    assert not c.format.accepts("notes.txt")
    assert parse_contract(c.to_dict()) == dataclasses.replace(c, source_path="<contract>")
    assert parse_contract({"name": "p", "kind": "images"}).images.size == (256, 256)


@pytest.mark.parametrize("data, message", [
    ({"images": {"size": [0, 10]}}, "images.size"),
    ({"images": {"fit": "stretch"}}, "images.fit"),
    ({"images": {"split": {"train": 0.5}}}, "sum to 1"),
    ({"images": {"labels": "labels.json"}}, "images.labels"),
    ({"images": {"colour": "yes"}}, "unknown images keys"),
    ({"columns": [{"name": "a", "type": "int"}]}, "columns is not set for kind images"),
    ({"primary_key": ["key"]}, "primary_key is not set"),
])
def test_image_contract_errors(data, message):
    with pytest.raises(ContractError, match=message):
        parse_contract({"name": "photos", "kind": "images", **data})
    if "images" in data:
        with pytest.raises(ContractError, match="images settings are for kind images"):
            parse_contract({"name": "t", **data})


def test_draft_from_a_folder_with_label_folders_and_an_archive(tmp_path, capsys):
    sample = tmp_path / "sample"
    for i in range(3):
        (sample / "cats").mkdir(parents=True, exist_ok=True)
        (sample / "cats" / f"{i}.jpg").write_bytes(jpeg(i, size=(320, 240)))
        (sample / "dogs").mkdir(parents=True, exist_ok=True)
        (sample / "dogs" / f"{i}.png").write_bytes(png(i, size=(300, 260)))
    write_zip(sample / "more.zip", [("birds/a.png", png(9, size=(300, 250))),
                                    ("notes.txt", b"hi")])
    out = tmp_path / "contracts"
    assert main(["contract", "draft", str(sample), "--dataset", "pets", "--out", str(out)]) == 0
    text = (out / "pets.yaml").read_text()
    assert "8 image(s) seen (1 archive(s)), 7 valid" in text
    assert "cats (3)" in text and "dogs (3)" in text
    c = load_contract(out / "pets.yaml")
    assert c.kind == "images" and c.images.size == (224, 224) and c.images.labels == "folder"
    assert yaml.safe_load(text)["images"]["fit"] == "crop"


def test_draft_from_one_small_image_and_from_no_image(tmp_path, capsys):
    (tmp_path / "a.png").write_bytes(png(1, size=(100, 80)))
    assert main(["contract", "draft", str(tmp_path / "a.png"), "--dataset", "one",
                 "--out", str(tmp_path)]) == 0
    c = load_contract(tmp_path / "one.yaml")
    assert c.images.size == (64, 64) and c.images.labels == "none"
    (tmp_path / "bad.jpg").write_bytes(b"text")
    assert main(["contract", "draft", str(tmp_path / "bad.jpg"), "--dataset", "bad",
                 "--out", str(tmp_path)]) == 2
    assert "no valid image" in capsys.readouterr().err

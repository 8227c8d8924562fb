import numpy as np
import pandas as pd
import pytest

from cradle_jax.data.errors import DataError
from cradle_jax.data.perturbations import PerturbationVocabulary, read_labels, split_label


def test_dosage_rows_for_singles_pairs_and_control():
    obs = pd.DataFrame({"p": ["non-targeting", "KLF1", "CEBPA+KLF1", "KLF1+CEBPA", "CEBPA"]})
    labels, vocab = read_labels(obs, "p", "+", "non-targeting")
    assert vocab.singles == ("CEBPA", "KLF1")
    assert labels.tolist() == ["non-targeting", "KLF1", "CEBPA+KLF1", "CEBPA+KLF1", "CEBPA"]
    expected = np.array([[0, 0], [0, 1], [1, 1], [1, 1], [1, 0]], dtype=np.float32)
    np.testing.assert_array_equal(vocab.dosage(labels.tolist()).toarray(), expected)


def test_control_member_drops_out_and_custom_separator():
    assert split_label("B_ctrl", "_", "ctrl") == ("B",)
    assert split_label("ctrl", "_", "ctrl") == ()
    assert split_label(" B | A ", "|", "ctrl") == ("A", "B")


@pytest.mark.parametrize(
    ("label", "message"),
    [("A++B", "empty name"), ("A+A", "twice"), ("+A", "empty name")],
)
def test_malformed_labels(label, message):
    with pytest.raises(DataError, match=message):
        split_label(label, "+", "non-targeting")


def test_unknown_perturbation_is_named():
    vocab = PerturbationVocabulary(("A", "B"), "+", "non-targeting")
    assert vocab.canonical("B+A") == "A+B"
    with pytest.raises(DataError, match="unknown perturbation 'Z'"):
        vocab.dosage(["A+Z"])


def test_missing_column_nan_and_unknown_control():
    obs = pd.DataFrame({"p": ["A", "B", "ctrl"]})
    with pytest.raises(DataError, match="perturbation column 'gene' not in obs"):
        read_labels(obs, "gene", "+", "ctrl")
    with pytest.raises(DataError, match="control label 'non-targeting' not found"):
        read_labels(obs, "p", "+", "non-targeting")
    with pytest.raises(DataError, match="1 missing values"):
        read_labels(pd.DataFrame({"p": ["A", None, "ctrl"]}), "p", "+", "ctrl")
    with pytest.raises(DataError, match="only control"):
        read_labels(pd.DataFrame({"p": ["ctrl", "ctrl"]}), "p", "+", "ctrl")


def test_vocabulary_round_trips():
    vocab = PerturbationVocabulary(("A", "B"), "_", "ctrl")
    assert PerturbationVocabulary.from_dict(vocab.to_dict()) == vocab


def test_categories_without_cells_do_not_enter_the_vocabulary():
    """A subset AnnData keeps unused categories; a perturbation group with no cells is dropped."""
    column = pd.Categorical(["A", "ctrl", "A+B"], categories=["A", "B", "Z", "ctrl", "A+B"])
    labels, vocab = read_labels(pd.DataFrame({"p": column}), "p", "+", "ctrl")
    assert vocab.singles == ("A", "B")
    assert labels.tolist() == ["A", "ctrl", "A+B"]

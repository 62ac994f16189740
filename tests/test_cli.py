"""The command line: a user's error is one sentence naming the problem; a bug keeps its traceback."""
import pytest

from clrepro import cli


def test_user_errors_are_one_sentence_and_bugs_keep_their_traceback(tmp_path, capsys, monkeypatch):
    with pytest.raises(SystemExit) as ended:
        cli.main(["download", "nosuch", "--root", str(tmp_path)])
    said = capsys.readouterr().err
    assert ended.value.code == 2 and "unknown dataset or weights 'nosuch'" in said and "-v shows the traceback" in said
    with pytest.raises(RuntimeError, match="unknown dataset or weights 'nosuch'"):   # -v: the traceback
        cli.main(["-v", "download", "nosuch", "--root", str(tmp_path)])

    def bug(a):
        return {}["hidden_key"]
    monkeypatch.setattr(cli, "_download", bug)
    with pytest.raises(KeyError, match="hidden_key"):                      # a failed lookup is a bug
        cli.main(["download", "mnist", "--root", str(tmp_path)])


def test_train_reads_the_data_root_given_with_a_configuration(tmp_path, capsys):
    """``clrepro train --config ... --data-root D`` looks for the data in D, not the configuration's root."""
    with pytest.raises(SystemExit):
        cli.main(["train", "--config", "config/config.yaml", "--experiment", "split_mnist_vdv19", "--scenario",
                  "task", "--method", "none", "--seed", "0", "--data-root", str(tmp_path / "elsewhere"),
                  "--out", str(tmp_path / "r.json"), "--device", "cpu"])
    assert f"{tmp_path}/elsewhere/MNIST/raw/train-images-idx3-ubyte.gz is missing" in capsys.readouterr().err

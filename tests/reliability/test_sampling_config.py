"""Sampling settings are checked per sampler and per method when a config is read (issue 8).

A chain section takes the options of the sampler it names (a `pc` signal chain takes corrector_steps and
snr), and nothing else; `sampling.methods` takes known methods and each method's own options only.
"""

import pytest

from .conftest import BUNDLE, one_line_error, run, tiny_config

ROWS = {  # sampling override -> what the one line must say
    "method_typo": ({"methods": {"paralel": {"switch_fraction": 0.5}}}, "'sampling.methods.paralel': no such method"),
    "method_option_typo": ({"methods": {"parallel": {"swich_fraction": 0.5}}},
                           "'sampling.methods.parallel.swich_fraction' (an option method 'parallel' does not take); "
                           "valid keys there: signal_steps, logit_steps, switch_fraction, signal_guidance"),
    "option_of_another_method": ({"methods": {"sequential": {"rounds": 2}}}, "sampling.methods.sequential.rounds"),
    "ddim_corrector_steps": ({"signal": {"steps": 2, "sampler": "ddim", "corrector_steps": 7}},
                             "sampling.signal.corrector_steps is not an option of sampler 'ddim'; its options: eta"),
    "ddpm_eta": ({"signal": {"steps": 2, "sampler": "ddpm", "eta": 0.3}},
                 "sampling.signal.eta is not an option of sampler 'ddpm'; its options: none"),
    "pc_eta": ({"logits": {"steps": 2, "sampler": "pc", "eta": 0.0}}, "sampling.logits.eta is not an option of sampler 'pc'"),
    "pc_snr_negative": ({"logits": {"steps": 2, "sampler": "pc", "snr": -3}}, "sampling.logits.snr must lie in (0, 100]"),
    # option values too, not only option names (issue 17): checked before any method runs
    "rounds_negative": ({"methods": {"alternating": {"rounds": -3}}}, "sampling.methods.alternating.rounds must be an integer >= 1"),
    "switch_fraction_2": ({"methods": {"parallel": {"switch_fraction": 2}}}, "sampling.methods.parallel.switch_fraction must lie in [0, 1]"),
    "signal_steps_string": ({"methods": {"sequential": {"signal_steps": "five"}}}, "sampling.methods.sequential.signal_steps"),
    "signal_net_unknown": ({"methods": {"sequential": {"signal_net": "mine"}}}, "sampling.methods.sequential.signal_net"),
    "classifier_gradient_negative": ({"methods": {"parallel": {"classifier_gradient": -1}}},
                                     "sampling.methods.parallel.classifier_gradient"),
}


# were the check missing, the command would evaluate: keep that short
SMALL = ("--max-items", 4, "--levels", "heavy", "--corruptions", "pixel_noise", "--methods", "noisy", "--seeds", 0)


def test_a_method_typo_through_the_installed_command(tmp_path):
    cfg = tiny_config(tmp_path, sampling={"methods": {"paralel": {}}})
    proc = run("evaluate", cfg, "--checkpoint", BUNDLE, "--out", tmp_path / "ev", "--quiet", *SMALL)
    assert "sampling.methods.paralel" in one_line_error(proc.returncode, proc.stderr)
    assert not (tmp_path / "ev").exists()


@pytest.mark.parametrize("row", sorted(ROWS))
def test_sampling_options_are_checked_per_sampler_and_method(cli, tmp_path, row):
    override, message = ROWS[row]
    cfg = tiny_config(tmp_path, sampling=override)
    code, _, err = cli("evaluate", cfg, "--checkpoint", BUNDLE, "--out", tmp_path / "ev", "--quiet", *SMALL)
    assert message in one_line_error(code, err)


def test_a_pc_chain_takes_its_corrector_options():
    from coupled.config import load_config, make_config
    from coupled.defaults import DEFAULTS

    from .conftest import ROOT
    from coupled.bundle import chains_from_sampling
    from coupled.engine import CentredProcess, VPProcess
    from coupled.schema import check_sampling

    cfg = make_config({"sampling": {"signal": {"sampler": "pc", "corrector_steps": 3, "snr": 0.25},
                                    "logits": {"sampler": "ddim", "eta": 0.5}}})
    assert cfg["sampling"]["signal"] == {"steps": 5, "sampler": "pc", "corrector_steps": 3, "snr": 0.25, "denoise_final": False}
    assert cfg["sampling"]["logits"] == {"steps": 5, "sampler": "ddim", "eta": 0.5}
    signal, logits = chains_from_sampling(CentredProcess(), VPProcess(1000), cfg["sampling"])
    assert signal.options == {"corrector_steps": 3, "snr": 0.25, "denoise_final": False} and logits.options == {"eta": 0.5}
    assert check_sampling(cfg["sampling"], "pipeline.json") is cfg["sampling"]
    # the defaults and the shipped config still load, and their chains build as before
    for sampling in (make_config()["sampling"], load_config(ROOT / "configs" / "mnist.yaml")["sampling"]):
        signal, logits = chains_from_sampling(VPProcess(1000), CentredProcess(), sampling)
        assert signal.options == {"eta": sampling["signal"]["eta"]}
        assert logits.options == {**{k: sampling["logits"][k] for k in ("corrector_steps", "snr")}, "denoise_final": False}
    assert DEFAULTS["sampling"]["signal"] == {"steps": 5, "sampler": "ddim", "eta": 0.0}


def _bundle_with_stored(tmp_path, method, option, value):
    """A copy of the bundle whose pipeline.json stores `option: value` for `method`, re-sealed."""
    import json
    import shutil

    from coupled.checkpoint import seal

    folder = tmp_path / "bundle"
    shutil.copytree(BUNDLE, folder, ignore=shutil.ignore_patterns("logs"))
    pipeline = json.loads((folder / "pipeline.json").read_text())
    pipeline["sampling"]["methods"].setdefault(method, {})[option] = value
    (folder / "pipeline.json").write_text(json.dumps(pipeline))
    seal(folder)
    return folder


def test_a_bad_method_option_stored_in_pipeline_json_is_one_line(cli, tmp_path):
    """pipeline.json overrides the config's sampling: its method options are checked when it is read (issue 17)."""
    from coupled import CoupledPipeline
    from coupled.errors import CoupledError

    folder = _bundle_with_stored(tmp_path, "alternating", "rounds", -3)
    cfg = tiny_config(tmp_path)
    code, _, err = cli("evaluate", cfg, "--checkpoint", folder, "--out", tmp_path / "ev", "--quiet", *SMALL)
    line = one_line_error(code, err.replace(next((x for x in err.splitlines() if "coupled: note:" in x), ""), ""))
    assert str(folder / "pipeline.json") in line and "sampling.methods.alternating.rounds must be an integer >= 1" in line
    assert not (tmp_path / "ev").exists()
    with pytest.raises(CoupledError, match="pipeline.json: .*sampling.methods.alternating.rounds"):
        CoupledPipeline.from_pretrained(folder)
    # an explicit --set on top of the stored value is what runs: no error
    code, _, err = cli("evaluate", cfg, "--checkpoint", folder, "--out", tmp_path / "ev", "--quiet", *SMALL,
                       "--set", "sampling.methods.alternating.rounds=2")
    assert code == 0, err

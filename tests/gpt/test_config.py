import pytest

from gpt.config import (
    ConfigError,
    TrainConfig,
    describe,
    from_dict,
    load_config,
    parse_overrides,
    preset_names,
)


@pytest.mark.parametrize("name", preset_names())
def test_every_preset_loads(name):
    cfg = load_config(TrainConfig, name)
    assert cfg.data and cfg.max_iters > 0


def test_presets_reproduce_the_classic_recipes():
    cpu = load_config(TrainConfig, "shakespeare-char-cpu")
    assert (cpu.model.n_layer, cpu.model.n_head, cpu.model.n_embd, cpu.model.block_size) == (4, 4, 128, 64)
    assert (cpu.batch_size, cpu.lr, cpu.max_iters, cpu.lr_decay_iters, cpu.eval_iters) == (
        12,
        1e-3,
        2000,
        2000,
        20,
    )
    gpu = load_config(TrainConfig, "shakespeare-char")
    assert (gpu.model.n_layer, gpu.model.n_embd, gpu.model.block_size, gpu.batch_size) == (6, 384, 256, 64)
    gpt2 = load_config(TrainConfig, "gpt2-124m")
    assert gpt2.batch_size * gpt2.grad_accum * gpt2.model.block_size == 491_520
    fine = load_config(TrainConfig, "finetune-gpt2")
    assert (fine.init_from, fine.lr, fine.lr_schedule) == ("gpt2", 3e-5, "constant")


def test_overrides_are_typed_and_nested():
    cfg = load_config(TrainConfig, "shakespeare-char-cpu", ["--max_iters=10", "--model.dropout=0.1", "--lr=6e-4"])
    assert (cfg.max_iters, cfg.model.dropout, cfg.lr) == (10, 0.1, 6e-4)
    assert parse_overrides(["--compile=true", "--out_dir=runs/a=b"]) == {
        "compile": True,
        "out_dir": "runs/a=b",
    }


def test_unknown_key_names_the_path_and_a_close_match():
    with pytest.raises(ConfigError, match=r"unknown key 'model.n_layers' \(did you mean 'model.n_layer'\?\)"):
        from_dict(TrainConfig, {"model": {"n_layers": 4}})
    with pytest.raises(ConfigError, match="unknown key 'max_iter'.*allowed keys: data, out_dir"):
        load_config(TrainConfig, None, ["--max_iter=3"])


def test_wrong_types_and_choices():
    with pytest.raises(ConfigError, match="max_iters must be int, got str 'many'"):
        load_config(TrainConfig, None, ["--max_iters=many"])
    with pytest.raises(ConfigError, match="compile must be bool"):
        from_dict(TrainConfig, {"compile": "yes please"})
    with pytest.raises(ConfigError, match="dtype must be one of 'auto', 'float32'"):
        from_dict(TrainConfig, {"dtype": "fp8"})
    with pytest.raises(ConfigError, match="batch_size must be int, got bool"):
        from_dict(TrainConfig, {"batch_size": True})


def test_bad_sources(tmp_path):
    with pytest.raises(ConfigError, match="neither a file nor a shipped preset"):
        load_config(TrainConfig, "no-such-preset")
    bad = tmp_path / "c.yaml"
    bad.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_config(TrainConfig, str(bad))


def test_every_key_is_documented():
    text = describe(TrainConfig)
    for line in text.splitlines():
        assert line.split(")", 1)[1].strip(), f"undocumented: {line}"
    assert "--model.n_layer=12" in text

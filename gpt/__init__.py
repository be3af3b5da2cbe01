"""The GPT engine: pure PyTorch and numpy. Runs under plain `python` or `torchrun`; knows nothing of orchestration.

python -m gpt.prepare_text INPUT.txt --tokenizer char --out DIR    # text -> token dataset
python -m gpt.train PRESET_OR_CONFIG [--key=value ...]            # train, resume, fine-tune
python -m gpt.sample --ckpt RUN_OR_STEP_DIR --start "..."          # generate
"""

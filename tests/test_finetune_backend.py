"""The fine-tuned text backend (LoRA over a local causal LM) on a tiny model the test builds offline:
a word-level tokenizer trained on the test table and a 2-layer Llama with random weights."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import pandas as pd
import pytest

pytest.importorskip("peft")
pytest.importorskip("transformers")

from test_mixed_spec import SPEC, agrees, visits  # noqa: E402

from synthloop.generate.runner import PromptedGenerator  # noqa: E402
from synthloop.llm.base import LLMRequest  # noqa: E402
from synthloop.spec import SpecError, load_spec  # noqa: E402


def tiny_model(folder: Path, texts: list[str]) -> Path:
    """A word-level tokenizer trained on `texts` and a random 2-layer Llama, saved as a model folder."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece()  # joins word-level tokens with spaces
    tok.train_from_iterator(texts, trainers.WordLevelTrainer(special_tokens=["[UNK]", "[PAD]", "[BOS]", "[EOS]"]))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", bos_token="[BOS]",
                                   eos_token="[EOS]")
    torch.manual_seed(0)
    # weights large enough that a frozen random output layer still lets LoRA reach confident predictions
    cfg = LlamaConfig(vocab_size=len(fast), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256, initializer_range=0.5,
                      bos_token_id=fast.bos_token_id, eos_token_id=fast.eos_token_id, pad_token_id=fast.pad_token_id)
    out = folder / "tiny-llama"
    LlamaForCausalLM(cfg).save_pretrained(out)
    fast.save_pretrained(out)
    return out


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    real = visits()
    # the note's words are whole tokens of the word-level tokenizer (no punctuation glued to them)
    real["note"] = real["note"].str.replace(r"[.:,]", "", regex=True)
    real = real.drop(columns=["visit_id"])
    real.to_csv(tmp_path / "visits.csv", index=False)
    corpus = real.astype(str).apply(lambda r: " ".join(f"{c}: {v}" for c, v in r.items()), axis=1).tolist()
    corpus += [" ".join(real.columns) + " : assistant user system"]
    tiny_model(tmp_path, corpus)
    return tmp_path


def spec_text(folder: Path, rows: int = 12, epochs: int = 3) -> str:
    llm = (f"llm: {{backend: finetuned, model: {folder / 'tiny-llama'}, temperature: 0.3, "
           f"finetune: {{epochs: {epochs}, rank: 8, learning_rate: 0.05, batch_size: 16, adapter: adapter}}}}\n")
    return llm + SPEC.format(extra="").replace("rows: 30", f"rows: {rows}").replace(
        "        must_mention: [department]\n", "")


def generate(folder: Path, text: str) -> tuple[PromptedGenerator, pd.DataFrame]:
    p = folder / "spec.yaml"
    p.write_text(text)
    gen = PromptedGenerator(load_spec(p), cache_dir=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return gen, gen.generate().data


def test_finetuned_backend_learns_texts_that_follow_their_row_and_reuses_its_adapter(folder: Path) -> None:
    import torch

    torch.set_num_threads(1)
    gen, df = generate(folder, spec_text(folder))
    info = gen.backend.info  # type: ignore[attr-defined]
    assert not info["reused"] and info["last_loss"] < info["first_loss"]
    assert (folder / "adapter" / "adapter_model.safetensors").exists()
    assert json.loads((folder / "adapter" / "synthloop_finetune.json").read_text())["columns"]["note"]
    assert len(df) == 12 and df["note"].str.len().gt(0).all()
    # the tuned model writes from the row: the planted opening follows severity
    first = df["note"].str.split().str[0]
    assert set(first) <= {"Urgent", "Routine"}
    assert agrees(df).mean() >= 0.95
    # the same data and settings load the saved adapter instead of training again
    gen2, df2 = generate(folder, spec_text(folder))
    assert gen2.backend.info["reused"]  # type: ignore[attr-defined]
    assert df2["note"].tolist() == df["note"].tolist()


def test_finetuned_backend_answers_other_requests_with_its_base_model(folder: Path) -> None:
    gen, _ = generate(folder, spec_text(folder, rows=2, epochs=1))
    res = gen.backend.complete([LLMRequest(messages=(("user", "severity high"),), max_tokens=4, seed=1)])[0]
    assert isinstance(res.text, str) and res.completion_tokens <= 4


def test_finetuned_backend_without_a_learn_block_is_one_clear_error(folder: Path) -> None:
    text = (f"name: x\nrows: 2\nllm: {{backend: finetuned, model: {folder / 'tiny-llama'}}}\ncolumns:\n"
            "  - name: note\n    llm: {prompt: \"A note.\"}\n")
    with pytest.raises(SpecError, match="learn: block"):
        generate(folder, text)

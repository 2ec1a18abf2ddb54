"""Reference answers for the exercises of notebooks/00_welcome.ipynb."""

# 00.1: gate_proj and up_proj map 576 -> 1536, down_proj maps 1536 -> 576; no biases.
mlp_parameters = 576 * 1536 + 576 * 1536 + 1536 * 576  # 2,654,208

# 00.2: the embedding is vocabulary x hidden; lm_head is tied to it (the same tensor), so it adds nothing.
embedding_share = 49_152 * 576 / 134_515_008  # about 0.21

if __name__ == "__main__":
    from lora_edu import exercises

    exercises.check_mlp_parameters(mlp_parameters)
    exercises.check_embedding_share(embedding_share)

"""Reference answers for the exercises of notebooks/12_advice_tested.ipynb (try them yourself first)."""

# 12.1 (an experiment): either prediction can be argued, which is the point of running it. A truncated target
# teaches the end token at a random place in the answer; a wrong value teaches a random other name, age, job or
# city. Each corrupted answer pulls on different tokens, and the clean answer stays the most likely one at every
# position, so greedy decoding may shrug off both; the answer loss shows the damage first. The checker calls a gap
# under 3 of the 40 test examples a tie (section 5's margin) and prints both answer losses. In the notebook:
#   pool = newlang.format_pool(Q["noisy"])
#   noise_rows = {kind: recipes.run_route(noise.add_noise(pool, 0.5, seed=0, kinds=(kind,)), FORMAT_TEST,
#                                         route="lora", r=8, steps=Q["steps"], lr=LR["lora"],
#                                         batch_size=Q["batch_size"], max_new_tokens=40)
#                 for kind in ("truncated", "wrong_value")}
noise_prediction = "truncated"

# 12.2: the embedding is one 49,152 x 576 matrix of fp32 numbers: 49,152 * 576 * 4 = 113,246,208 bytes (108 MiB),
# saved once because SmolLM2's output head is the same tensor. Section 3's table shows the difference between
# the "LoRA r=8 + embeddings" and "LoRA r=8" files: a little more (123,064,120 - 9,816,048 = 113,248,072 bytes),
# because each file's safetensors header lists every tensor's name, shape and offsets; the checker accepts both.
embedding_bytes = 49_152 * 576 * 4

if __name__ == "__main__":
    from lora_edu import exercises

    exercises.check_embedding_bytes(embedding_bytes)

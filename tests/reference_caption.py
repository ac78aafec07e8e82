"""Plain re-statements of ClipCap's published decoding loops, to check ours against.

Written from the published algorithm (``generate2`` and ``generate_beam`` of
rmokady/CLIP_prefix_caption), one image at a time, with no key/value cache: every step runs
GPT-2 on the whole growing sequence of embeddings (prefix + generated tokens).
"""

from __future__ import annotations

import torch


def reference_generate2(
    gpt: torch.nn.Module,
    embed: torch.Tensor,
    stop_id: int,
    entry_length: int = 67,
    top_p: float = 0.8,
    temperature: float = 1.0,
) -> list[int]:
    """Greedy-after-nucleus decoding of one ``[1, L, D]`` prefix; tokens incl. the stop."""
    wte = gpt.transformer.wte
    generated = embed
    tokens: list[int] = []
    with torch.no_grad():
        for _ in range(entry_length):
            logits = gpt(inputs_embeds=generated).logits[:, -1, :]
            logits = logits / (temperature if temperature > 0 else 1.0)
            sorted_logits, sorted_indices = torch.sort(logits, descending=True)
            cumulative = torch.cumsum(torch.softmax(sorted_logits, dim=-1), dim=-1)
            remove = cumulative > top_p
            remove[..., 1:] = remove[..., :-1].clone()
            remove[..., 0] = False
            logits[:, sorted_indices[remove]] = float("-inf")
            next_token = torch.argmax(logits, -1).unsqueeze(0)
            tokens.append(int(next_token.item()))
            generated = torch.cat((generated, wte(next_token)), dim=1)
            if next_token.item() == stop_id:
                break
    return tokens


def reference_generate_beam(
    gpt: torch.nn.Module,
    embed: torch.Tensor,
    stop_id: int,
    beam_size: int = 5,
    entry_length: int = 67,
    temperature: float = 1.0,
) -> list[list[int]]:
    """Beam search over one ``[1, L, D]`` prefix; every beam's tokens, best first."""
    wte = gpt.transformer.wte
    tokens = None
    scores = None
    seq_lengths = torch.ones(beam_size)
    is_stopped = torch.zeros(beam_size, dtype=torch.bool)
    generated = embed
    with torch.no_grad():
        for _ in range(entry_length):
            logits = gpt(inputs_embeds=generated).logits[:, -1, :]
            logits = (logits / (temperature if temperature > 0 else 1.0)).softmax(-1).log()
            if scores is None:
                scores, next_tokens = logits.topk(beam_size, -1)
                generated = generated.expand(beam_size, *generated.shape[1:])
                next_tokens, scores = next_tokens.permute(1, 0), scores.squeeze(0)
                tokens = next_tokens
            else:
                logits[is_stopped] = float("-inf")
                logits[is_stopped, 0] = 0
                scores_sum = scores[:, None] + logits
                seq_lengths[~is_stopped] += 1
                average = scores_sum / seq_lengths[:, None]
                average, next_tokens = average.view(-1).topk(beam_size, -1)
                source = next_tokens // scores_sum.shape[1]
                seq_lengths = seq_lengths[source]
                next_tokens = (next_tokens % scores_sum.shape[1]).unsqueeze(1)
                tokens = torch.cat((tokens[source], next_tokens), dim=1)
                generated = generated[source]
                scores = average * seq_lengths
                is_stopped = is_stopped[source]
            next_embed = wte(next_tokens.squeeze()).view(generated.shape[0], 1, -1)
            generated = torch.cat((generated, next_embed), dim=1)
            is_stopped = is_stopped + next_tokens.eq(stop_id).squeeze()
            if is_stopped.all():
                break
    scores = scores / seq_lengths
    order = scores.argsort(descending=True, stable=True)
    rows = tokens.tolist()
    return [rows[i][: int(seq_lengths[i])] for i in order]

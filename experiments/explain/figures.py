"""Matplotlib with the Agg backend, and the attention heatmaps every claim draws.

Dimension key: N heads, T query positions, S key positions, L layers.
"""

import os

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

DPI = 100
SEED_COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple")


def save(fig, figure_dir: str, name: str) -> str:
  """Write `fig` to `<figure_dir>/<name>` as PNG, close it, return `name`."""
  os.makedirs(figure_dir, exist_ok=True)
  fig.savefig(os.path.join(figure_dir, name), dpi=DPI, bbox_inches="tight")
  plt.close(fig)
  return name


def heatmap(
  ax,
  weights_TS,
  *,
  title: str = "",
  xlabels=None,
  ylabels=None,
  vmax: float = 1.0,
  annotate: bool = False,
  cmap: str = "viridis",
):
  """Draw one [T, S] attention map on `ax`: rows are queries, columns keys."""
  weights_TS = np.asarray(weights_TS)
  image = ax.imshow(weights_TS, cmap=cmap, vmin=0.0, vmax=vmax, interpolation="nearest")
  ax.set_title(title, fontsize=9)
  T, S = weights_TS.shape
  for labels, setter, size in ((xlabels, ax.set_xticks, S), (ylabels, ax.set_yticks, T)):
    if labels is None:
      setter([])
    else:
      setter(range(size), labels=[str(x) for x in labels], fontsize=6)
  if annotate:
    for t in range(T):
      for s in range(S):
        value = weights_TS[t, s]
        ax.text(
          s,
          t,
          f"{value:.3f}",
          ha="center",
          va="center",
          fontsize=8,
          color="black" if value > 0.6 * vmax else "white",
        )
  return image


def attention_grid(
  maps_LNTS, *, row_titles=None, xlabels=None, ylabels=None, suptitle: str = "", cell: float = 1.9
):
  """A figure of L rows by N columns of [T, S] heatmaps (one row per layer); returns it."""
  maps_LNTS = [np.asarray(m) for m in maps_LNTS]
  L, N = len(maps_LNTS), maps_LNTS[0].shape[0]
  fig, axes = plt.subplots(L, N, figsize=(cell * N + 0.6, cell * L + 0.5), squeeze=False)
  for layer in range(L):
    for head in range(N):
      name = row_titles[layer] if row_titles else f"layer {layer}"
      heatmap(
        axes[layer, head],
        maps_LNTS[layer][head],
        title=f"{name}, head {head}",
        xlabels=xlabels,
        ylabels=ylabels,
      )
  if suptitle:
    fig.suptitle(suptitle, fontsize=10)
  fig.tight_layout()
  return fig

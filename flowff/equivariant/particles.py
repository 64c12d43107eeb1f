"""Geometry of particle systems: pair vectors, distances, centre of mass, symmetry operations.

Configurations are tensors of shape (..., n_particles, n_dims) in the systems' reduced length
unit (1 unit = 1 nm when handed to OpenMM, see ``flowff.equivariant.openmm_systems``).
"""

from __future__ import annotations

import torch


def check_configurations(x: torch.Tensor, n_particles: int, n_dims: int) -> None:
    """Raise ``ValueError`` unless ``x`` has shape (..., n_particles, n_dims) and floats."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"configurations must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() < 2 or tuple(x.shape[-2:]) != (n_particles, n_dims):
        raise ValueError(
            f"configurations must have shape (..., {n_particles}, {n_dims}), "
            f"got {tuple(x.shape)}"
        )
    if not x.is_floating_point():
        raise ValueError(f"configurations must be floating point, got {x.dtype}")


def remove_mean(x: torch.Tensor) -> torch.Tensor:
    """Subtract the centre of geometry: (..., n, d) -> (..., n, d) with zero mean over particles."""
    return x - x.mean(dim=-2, keepdim=True)


def unique_pair_distances(x: torch.Tensor) -> torch.Tensor:
    """Distances d_ij for i < j: (..., n, d) -> (..., n (n - 1) / 2), in row-major pair order."""
    n = x.shape[-2]
    rows, cols = torch.triu_indices(n, n, offset=1, device=x.device)
    diff = x[..., rows, :] - x[..., cols, :]
    return diff.norm(dim=-1)


def random_rotations(
    n: int,
    n_dims: int,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """Haar-random proper rotations, shape (n, n_dims, n_dims), det = +1 (QR with sign fix)."""
    gaussian = torch.randn(n, n_dims, n_dims, generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(gaussian)
    q = q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1)).unsqueeze(-2)
    det = torch.linalg.det(q)
    q[..., :, 0] = q[..., :, 0] * det.unsqueeze(-1)
    return q.to(dtype)


def random_permutations(
    n: int, n_particles: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Independent random permutations of particle indices, shape (n, n_particles), int64."""
    return torch.argsort(torch.rand(n, n_particles, generator=generator), dim=-1)


def rotate_and_permute(
    x: torch.Tensor, rotations: torch.Tensor, permutations: torch.Tensor
) -> torch.Tensor:
    """Apply per-sample rotation R (x_i -> R x_i) and permutation p (x_i -> x_{p(i)}).

    Shapes: x (b, n, d), rotations (b, d, d), permutations (b, n) -> (b, n, d).
    """
    permuted = torch.gather(x, 1, permutations.unsqueeze(-1).expand_as(x))
    return permuted @ rotations.transpose(-1, -2).to(x.dtype)


def augment(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random rotation and permutation of every configuration in a batch (b, n, d)."""
    b, n, d = x.shape
    rot = random_rotations(b, d, generator=generator, dtype=x.dtype).to(x.device)
    perm = random_permutations(b, n, generator=generator).to(x.device)
    return rotate_and_permute(x, rot, perm)


def subspace_dimension(n_particles: int, n_dims: int) -> int:
    """Dimension (n - 1) d of the centre-of-mass-free subspace."""
    return (n_particles - 1) * n_dims


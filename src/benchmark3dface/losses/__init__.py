"""Loss terms shared by the methods (Deng'19, DF-MVR, Richardson'17, Gao et al., WM3DR).

Each term is a small pure torch function on batched tensors (units and the paper equation in
its docstring); ``CenterLoss`` is the one module with state.  ``weighted_sum`` /
``LossWeights`` combine named terms with config weights.

Modules: ``common`` (masked means, robust norms), ``photometric``, ``parsing``, ``landmarks``,
``perceptual``, ``regularizers``, ``shape``, ``depth``, ``shading``, ``recognition``,
``adversarial``, ``detection``, ``weighting``.
"""

from .adversarial import (
    WGAN_DIV_K,
    WGAN_DIV_P,
    CriticLoss,
    wgan_critic_loss,
    wgan_div_critic_loss,
    wgan_div_gradient_penalty,
    wgan_generator_loss,
)
from .common import charbonnier, masked_mean, safe_norm
from .depth import (
    depth_fidelity_loss,
    depth_laplacian,
    depth_smoothness_loss,
    depth_to_points,
    erode_mask4,
    normals_from_depth,
)
from .detection import draw_gaussian_heatmap, focal_heatmap_loss
from .landmarks import (
    CONTOUR_PAIRS_68,
    DENG_HIGH_WEIGHT_INDICES,
    DFMVR_CODE_HIGH_WEIGHT_INDICES,
    DFMVR_LM101_ALIGN_INDICES,
    GDL_PAIRS_68,
    OPENING_PAIRS_68,
    aligned_landmark3d_loss,
    landmark_gdl_loss,
    landmark_loss,
    landmark_weights,
    similarity_align,
)
from .parsing import (
    DFMVR_CODE_DILATION_PX,
    DFMVR_CODE_LEVELS,
    DFMVR_PAPER_DILATION_PX,
    DFMVR_PAPER_LEVELS,
    FACIAL_FEATURE_CLASSES,
    dfmvr_weight_map,
    dilate_mask,
    parse_cross_entropy,
)
from .perceptual import feature_l2_loss, identity_perceptual_loss
from .photometric import gradient_difference_loss, photometric_loss, skin_attention
from .recognition import CenterLoss, recognition_loss, softmax_recognition_loss
from .regularizers import (
    DENG_CODE_COEFF_REG_WEIGHTS,
    DENG_COEFF_REG_WEIGHTS,
    albedo_symmetry_loss,
    coefficient_regularization,
    gamma_loss,
    laplacian_apply,
    row_normalized_laplacian,
    template_laplacian_loss,
    texture_flatness_loss,
    texture_variance_loss,
)
from .shading import sfs_loss, sh1_shading, solve_albedo_linear, solve_albedo_per_pixel, solve_sh_lighting
from .shape import basis_gram, gmse_loss, pairwise_shape_loss, pose_mse_loss, shape_l1_loss
from .weighting import LossWeights, WeightedLoss, weighted_sum

__all__ = [
    # common
    "masked_mean", "safe_norm", "charbonnier",
    # photometric / parsing
    "skin_attention", "photometric_loss", "gradient_difference_loss",
    "dfmvr_weight_map", "dilate_mask", "parse_cross_entropy",
    "FACIAL_FEATURE_CLASSES", "DFMVR_PAPER_LEVELS", "DFMVR_CODE_LEVELS",
    "DFMVR_PAPER_DILATION_PX", "DFMVR_CODE_DILATION_PX",
    # landmarks
    "landmark_weights", "landmark_loss", "landmark_gdl_loss", "similarity_align",
    "aligned_landmark3d_loss", "DENG_HIGH_WEIGHT_INDICES", "DFMVR_CODE_HIGH_WEIGHT_INDICES",
    "DFMVR_LM101_ALIGN_INDICES", "CONTOUR_PAIRS_68", "OPENING_PAIRS_68", "GDL_PAIRS_68",
    # perceptual
    "identity_perceptual_loss", "feature_l2_loss",
    # regularisers
    "coefficient_regularization", "gamma_loss", "texture_flatness_loss", "texture_variance_loss",
    "albedo_symmetry_loss", "template_laplacian_loss", "laplacian_apply", "row_normalized_laplacian",
    "DENG_COEFF_REG_WEIGHTS", "DENG_CODE_COEFF_REG_WEIGHTS",
    # shape / depth / shading
    "gmse_loss", "basis_gram", "pose_mse_loss", "shape_l1_loss", "pairwise_shape_loss",
    "depth_to_points", "normals_from_depth", "depth_laplacian", "erode_mask4",
    "depth_fidelity_loss", "depth_smoothness_loss",
    "sh1_shading", "sfs_loss", "solve_sh_lighting", "solve_albedo_per_pixel", "solve_albedo_linear",
    # recognition / adversarial / detection
    "CenterLoss", "softmax_recognition_loss", "recognition_loss",
    "wgan_div_gradient_penalty", "wgan_critic_loss", "wgan_generator_loss", "wgan_div_critic_loss",
    "CriticLoss", "WGAN_DIV_K", "WGAN_DIV_P",
    "focal_heatmap_loss", "draw_gaussian_heatmap",
    # weighting
    "LossWeights", "WeightedLoss", "weighted_sum",
]

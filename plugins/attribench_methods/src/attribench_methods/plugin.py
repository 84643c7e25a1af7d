"""Registration of the `methods` plugin's explainers. Only names and lazy `"module:Class"` targets: importing
this module must not import torch or Captum (`attribench list` stays fast).

Meta: `computed_by` names the Captum class that does the work, or `attribench_methods` where the method is
ours; `channel_less=True` marks `[B,1,H,W]` outputs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from attribench_core.hookspecs import hookimpl

PKG = "attribench_methods"


@hookimpl
def register_explainers(register: Callable[..., Any]) -> None:
    register(
        "gradient",
        f"{PKG}.gradients:Gradient",
        description="Vanilla gradient of the target logit (Simonyan et al. 2013), signed",
        aliases=("saliency", "vanilla_gradient"),
        computed_by="captum.attr.Saliency",
    )
    register(
        "smoothgrad",
        f"{PKG}.gradients:SmoothGrad",
        description="SmoothGrad (Smilkov et al. 2017): mean gradient over noisy copies of the input",
        computed_by=PKG,
    )
    register(
        "smoothgrad_sq",
        f"{PKG}.gradients:SmoothGradSquared",
        description="SmoothGrad²: mean squared gradient over noisy copies (what BAM and SMERF ran)",
        aliases=("smoothgrad_squared",),
        computed_by=PKG,
    )
    register(
        "input_x_gradient",
        f"{PKG}.gradients:InputXGradient",
        description="Input × Gradient (Shrikumar et al. 2016)",
        aliases=("gradient_x_input", "ixg"),
        computed_by="captum.attr.InputXGradient",
    )
    register(
        "ig",
        f"{PKG}.gradients:IntegratedGradients",
        description="Integrated Gradients (Sundararajan et al. 2017), zero baseline",
        aliases=("integrated_gradients",),
        computed_by="captum.attr.IntegratedGradients",
    )
    register(
        "guided_backprop",
        f"{PKG}.backprop_rules:GuidedBackprop",
        description="Guided Backpropagation (Springenberg et al. 2015)",
        aliases=("gbp", "guided_backpropagation"),
        computed_by="captum.attr.GuidedBackprop",
    )
    register(
        "deconvnet",
        f"{PKG}.backprop_rules:Deconvnet",
        description="DeConvNet (Zeiler & Fergus 2014)",
        aliases=("deconvolution", "dcn"),
        computed_by="captum.attr.Deconvolution",
    )
    register(
        "gradcam",
        f"{PKG}.cam:GradCAM",
        description="Grad-CAM (Selvaraju et al. 2017) on the model's CAM layer, upsampled, [B,1,H,W]",
        aliases=("grad_cam",),
        computed_by="captum.attr.LayerGradCam",
        channel_less=True,
    )
    register(
        "deeplift",
        f"{PKG}.propagation:DeepLift",
        description="DeepLIFT (Shrikumar et al. 2017), Rescale rule, zero reference",
        aliases=("deeplift_rescale",),
        computed_by="captum.attr.DeepLift",
    )
    register(
        "lrp_epsilon",
        f"{PKG}.propagation:LRPEpsilon",
        description="LRP-ε (Bach et al. 2015), ε = 1 on Conv2d/Linear layers",
        aliases=("lrp_eps",),
        computed_by="captum.attr.LRP",
    )
    register(
        "random",
        f"{PKG}.baselines:RandomAttribution",
        description="Random baseline: U[0,1) per pixel from the run's generator, [B,1,H,W]",
        aliases=("random_baseline",),
        computed_by=PKG,
        channel_less=True,
    )
    register(
        "edge",
        f"{PKG}.baselines:SobelEdge",
        description="Sobel x-derivative of the image (SMERF's model-independent edge baseline), [B,1,H,W]",
        aliases=("sobel", "edge_detection"),
        computed_by=PKG,
        channel_less=True,
    )

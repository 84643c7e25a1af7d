"""Registration of the `methods` plugin's explainers. Only names and lazy `"module:Class"` targets: importing
this module must not import torch or Captum (`attribench list` stays fast).

Meta: `computed_by` names the Captum class that does the work, or `attribench_methods` where the method is
ours; `channel_less=True` marks `[B,1,H,W]` outputs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from attribench_core import hookimpl

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
        description="LRP-ε (Bach et al. 2015), ε = 1e-4 × RMS of each Conv2d/Linear layer's outputs",
        aliases=("lrp_eps",),
        computed_by="ours (attribench_methods.relevance)",
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
    register(
        "vargrad",
        f"{PKG}.ensembles:VarGrad",
        description="VarGrad (Adebayo et al. 2018): variance of the gradient over noisy copies of the input",
        aliases=("var_grad",),
        computed_by=PKG,
    )
    register(
        "ig_sg",
        f"{PKG}.ensembles:IGSmoothGrad",
        description="SmoothGrad over Integrated Gradients: mean IG map over noisy copies (SoCo)",
        aliases=("ig_smoothgrad",),
        computed_by=PKG,
    )
    register(
        "ig_sq",
        f"{PKG}.ensembles:IGSmoothGradSquared",
        description="SmoothGrad² over Integrated Gradients: mean squared IG map over noisy copies (SoCo)",
        aliases=("ig_smoothgrad_sq",),
        computed_by=PKG,
    )
    register(
        "ig_var",
        f"{PKG}.ensembles:IGVarGrad",
        description="VarGrad over Integrated Gradients: variance of IG maps over noisy copies (SoCo)",
        aliases=("ig_vargrad",),
        computed_by=PKG,
    )
    register(
        "guided_gradcam",
        f"{PKG}.cam:GuidedGradCAM",
        description="Guided Grad-CAM (Selvaraju et al. 2017): Guided Backprop × upsampled Grad-CAM",
        aliases=("guided_grad_cam",),
        computed_by="captum.attr.GuidedBackprop + captum.attr.LayerGradCam",
    )
    register(
        "deepshap",
        f"{PKG}.shap:DeepShap",
        description="DeepSHAP (Lundberg & Lee 2017): DeepLIFT averaged over background images",
        aliases=("deep_shap", "deepliftshap"),
        computed_by="captum.attr.DeepLift",
    )
    register(
        "gradient_shap",
        f"{PKG}.shap:GradientShap",
        description="Expected gradients / GradientSHAP (Erion et al. 2021) against background images",
        aliases=("expected_gradients", "gradshap"),
        computed_by=PKG,
    )
    register(
        "occlusion",
        f"{PKG}.perturbation:Occlusion",
        description="Occlusion (Zeiler & Fergus 2014): logit drop when a sliding patch is set to a baseline",
        computed_by="captum.attr.Occlusion",
    )
    register(
        "lrp_z",
        f"{PKG}.propagation:LRPZ",
        description="LRP-z (Bach et al. 2015): z-rule with bias, ε → 0 on every layer",
        aliases=("lrp_0",),
        computed_by="ours (attribench_methods.relevance)",
    )
    register(
        "lrp_alpha1beta0_flat",
        f"{PKG}.propagation:LRPAlpha1Beta0Flat",
        description="LRP preset A-flat: ε on Linear, α1β0 on Conv2d, flat rule on the input layer",
        aliases=("lrp_preset_a_flat",),
        computed_by="ours (attribench_methods.relevance) with our alpha-beta and flat rules",
    )
    register(
        "lrp_alpha2beta1_flat",
        f"{PKG}.propagation:LRPAlpha2Beta1Flat",
        description="LRP preset B-flat: ε on Linear, α2β1 on Conv2d, flat rule on the input layer",
        aliases=("lrp_preset_b_flat",),
        computed_by="ours (attribench_methods.relevance) with our alpha-beta and flat rules",
    )
    register(
        "deep_taylor",
        f"{PKG}.propagation:DeepTaylor",
        description="Deep Taylor, bounded (Montavon et al. 2017): z^B at the input, z+ above, w² at the top",
        aliases=("deeptaylor", "deep_taylor_bounded"),
        computed_by="ours (attribench_methods.relevance) with our z^B, z+ and w² rules",
    )
    register(
        "deeplift_rc",
        f"{PKG}.propagation:DeepLiftRevealCancel",
        description="DeepLIFT (Shrikumar et al. 2017), RevealCancel rule, zero reference",
        aliases=("deeplift_revealcancel", "deeplift_reveal_cancel"),
        computed_by=PKG,
    )
    register(
        "extremal_perturbation",
        f"{PKG}.extremal:ExtremalPerturbation",
        description="Extremal Perturbation (Fong et al. 2019): TorchRay's preservation game, area 0.3",
        aliases=("extremal", "ex_perturb"),
        computed_by=PKG,
        channel_less=True,
    )
    register(
        "iba",
        f"{PKG}.iba:IBA",
        description="Information Bottleneck Attribution (Schulz et al. 2020), per-sample bottleneck, in bits",
        aliases=("information_bottleneck",),
        computed_by=PKG,
        channel_less=True,
    )

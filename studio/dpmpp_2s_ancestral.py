"""A1111's "DPM++ 2S a" (k-diffusion's sample_dpmpp_2s_ancestral, eta=1, s_noise=1) as a diffusers scheduler.

diffusers has none: its table says "N/A, very similar to DPMSolverSinglestepScheduler", which is neither ancestral
nor a 2S step. KDPM2AncestralDiscreteScheduler (DPM2 a) has everything else the sampler needs: interleaved timesteps
(a model call at sigma, then one at the midpoint sigma_mid = exp(lerp(log sigma, log sigma_down, 1/2))), order 2,
sigma_up / sigma_down, Karras / exponential / beta sigmas, timestep spacing and img2img's begin index. The two
samplers differ only in the second stage of each step, so only that is ours:

- first stage, both: x_2 = x + (x - denoised) / sigma * (sigma_mid - sigma); k-diffusion writes it as
  (sigma_mid / sigma) * x - expm1(-h/2) * denoised, the same number. At the last step (sigma_down = 0, sigma_mid = 0)
  it is the Euler step to 0 with no second stage and no noise, as in k-diffusion.
- second stage, DPM2 a: x + (x_2 - denoised_2) / sigma_mid * (sigma_down - sigma);
  DPM++ 2S a: (sigma_down / sigma) * x - expm1(-h) * denoised_2, with h = log(sigma) - log(sigma_down);
  then, both, + noise * sigma_up.
"""

from __future__ import annotations

import torch
from diffusers import KDPM2AncestralDiscreteScheduler
from diffusers.schedulers.scheduling_k_dpm_2_ancestral_discrete import KDPM2AncestralDiscreteSchedulerOutput
from diffusers.utils.torch_utils import randn_tensor


class DPMPP2SAncestralDiscreteScheduler(KDPM2AncestralDiscreteScheduler):
    """DPM-Solver++(2S) steps with ancestral noise (k-diffusion's sample_dpmpp_2s_ancestral, eta=1, s_noise=1):
    DPM2 a's schedule, first stage and noise draws, with DPM-Solver++'s second stage."""

    def step(
        self,
        model_output: torch.Tensor,
        timestep: float | torch.Tensor,
        sample: torch.Tensor,
        generator: torch.Generator | None = None,
        return_dict: bool = True,
    ) -> KDPM2AncestralDiscreteSchedulerOutput | tuple[torch.Tensor, torch.Tensor]:
        if self.step_index is None:
            self._init_step_index(timestep)
        if self.state_in_first_order:  # the Euler step to sigma_mid (to 0 at the last step): DPM2 a's own
            return super().step(model_output, timestep, sample, generator=generator, return_dict=return_dict)

        # The second stage. The interleaved arrays hold step i's values at 2i (read as index - 1, like diffusers).
        index = self.step_index - 1
        sigma, sigma_mid = self.sigmas[index], self.sigmas_interpol[index]
        sigma_down, sigma_up = self.sigmas_down[index], self.sigmas_up[index]
        denoised = self._denoised(model_output, sample, sigma_mid)
        h = sigma.log() - sigma_down.log()  # t_next - t, with t = -log(sigma)
        prev_sample = (sigma_down / sigma) * self.sample - torch.expm1(-h) * denoised
        # The same draw as DPM2 a's (shape, dtype, device, generator): a seed gives the same noise.
        noise = randn_tensor(model_output.shape, dtype=model_output.dtype, device=model_output.device, generator=generator)
        prev_sample = prev_sample + noise * sigma_up

        self.sample = None
        self._step_index += 1
        if not return_dict:
            return prev_sample, denoised
        return KDPM2AncestralDiscreteSchedulerOutput(prev_sample=prev_sample, pred_original_sample=denoised)

    def _denoised(self, model_output: torch.Tensor, sample: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """The model's x0 estimate at `sigma`, as KDPM2AncestralDiscreteScheduler.step computes it (k-diffusion's
        CompVisDenoiser / CompVisVDenoiser scalings)."""
        prediction_type = self.config.prediction_type
        if prediction_type == "epsilon":
            return sample - sigma * model_output
        if prediction_type == "v_prediction":
            return model_output * (-sigma / (sigma**2 + 1) ** 0.5) + sample / (sigma**2 + 1)
        raise ValueError(f"prediction_type {prediction_type!r} is not supported by {type(self).__name__}: "
                         "use `epsilon` or `v_prediction`")

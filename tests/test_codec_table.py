"""One codec whitelist: the library's EncoderSettings and the service's ROBOVID_* settings take their
codecs, pixel formats and crf bounds from robovid.encoders' table (the service: software encoders only)."""

from __future__ import annotations

import typing
from pathlib import Path

import pytest

from robovid.encoders import ENCODERS, SOFTWARE_PIX_FMTS, SOFTWARE_VCODECS
from robovid.errors import InvalidEncoderOptionError
from robovid.settings import EncoderSettings
from robovid_watch.config import Settings, load_settings
from robovid_watch.errors import ConfigError


def test_the_service_offers_the_software_encoders_of_the_table() -> None:
    assert typing.get_args(Settings.model_fields["vcodec"].annotation) == SOFTWARE_VCODECS
    assert typing.get_args(Settings.model_fields["pix_fmt"].annotation) == SOFTWARE_PIX_FMTS
    assert not any(ENCODERS[name].is_hardware for name in SOFTWARE_VCODECS)
    assert "h264_nvenc" in ENCODERS and "h264_nvenc" not in SOFTWARE_VCODECS


@pytest.mark.parametrize("vcodec", SOFTWARE_VCODECS)
def test_each_encoders_crf_range_and_pixel_formats_are_what_the_settings_accept(vcodec: str, tmp_path: Path) -> None:
    spec = ENCODERS[vcodec]
    low, high = (int(bound) for bound in spec.crf_range)
    for pix_fmt in SOFTWARE_PIX_FMTS:
        if pix_fmt in spec.pix_fmts:
            EncoderSettings(vcodec=vcodec, pix_fmt=pix_fmt, crf=low)
            EncoderSettings(vcodec=vcodec, pix_fmt=pix_fmt, crf=high)
            load_settings(root=tmp_path, vcodec=vcodec, pix_fmt=pix_fmt, crf=high)
        else:
            with pytest.raises(InvalidEncoderOptionError, match="pix_fmt"):
                EncoderSettings(vcodec=vcodec, pix_fmt=pix_fmt)
    with pytest.raises(InvalidEncoderOptionError, match=f"from {low} to {high}"):
        EncoderSettings(vcodec=vcodec, crf=high + 1)
    with pytest.raises(ConfigError, match="ROBOVID_CRF"):
        load_settings(root=tmp_path, vcodec=vcodec, crf=high + 1)

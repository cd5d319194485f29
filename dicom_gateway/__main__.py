"""``python -m dicom_gateway``: the gateway alone, settings from ``LUS_GATEWAY_*``."""

from dicom_gateway.server import main

main()

"""PneumoEdge edge core: everything the kiosk needs to score an X-ray offline, without TensorFlow."""

__version__ = "0.3.0"

#: The intended-use statement: the one text shown wherever a result or a performance figure is
#: (kiosk pages and reports, API, command lines, evaluation and benchmark reports, plots).
INTENDED_USE = (
    "PneumoEdge is a screening aid for trained staff, not a diagnosis: "
    "every result must be reviewed by a clinician. "
    "It was trained and checked only on frontal chest X-rays of children aged 1 to 5 from one hospital."
)

from streamlit.testing.v1 import AppTest


def test_home_page_opens_on_the_demo():
    at = AppTest.from_file("../streamlit_app.py", default_timeout=180).run()
    assert not at.exception
    assert at.title[0].value == "Figurine latent-space explorer"
    assert "Active dataset: the demo (4,315 images, 64 px)" in [s.value for s in at.subheader]
    counts = at.dataframe[0].value
    assert dict(zip(counts["culture"], counts["images"])) == {
        "Achaemenid": 80, "Classical Greek and Hellenistic": 887, "Hellenistic Babylonian": 3144, "Neo-Babylonian": 204}

"""Figurine latent-space explorer: `streamlit run streamlit_app.py`."""
import streamlit as st

from core.paths import STATIC
from pages.common import navigation

if __name__ == "__main__":  # Streamlit runs this file as __main__; worker processes that import it draw nothing
    st.set_page_config(page_title="Figurine latent-space explorer", page_icon=str(STATIC / "icon.png"),
                       layout="wide")  # an icon served from here: the app asks nothing of other hosts
    navigation().run()

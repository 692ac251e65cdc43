"""Figurine latent-space explorer: `streamlit run streamlit_app.py`."""
import streamlit as st

st.set_page_config(page_title="Figurine latent-space explorer", page_icon="🏺", layout="wide")
st.navigation([st.Page("pages/home.py", title="Home", icon="🏠", default=True)]).run()

"""Figurine latent-space explorer: `streamlit run streamlit_app.py`."""
import streamlit as st

from pages.common import navigation

st.set_page_config(page_title="Figurine latent-space explorer", page_icon=":material/account_balance:", layout="wide")
navigation().run()

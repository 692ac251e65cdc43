"""Figurine latent-space explorer: `streamlit run streamlit_app.py`."""
import streamlit as st

st.set_page_config(page_title="Figurine latent-space explorer", page_icon=":material/account_balance:", layout="wide")
pages = [
    st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
    st.Page("pages/data.py", title="Data", icon=":material/photo_library:"),
    st.Page("pages/train.py", title="Train", icon=":material/model_training:"),
    st.Page("pages/explore.py", title="Explore", icon=":material/scatter_plot:"),
    st.Page("pages/influence.py", title="Influence", icon=":material/insights:"),
]
st.navigation(pages).run()

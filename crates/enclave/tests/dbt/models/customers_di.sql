{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='id') }}
select id, active_flag from {{ ref('stg_customers') }}
{% if is_incremental() %} where id >= (select max(id) from {{ this }}) {% endif %}
